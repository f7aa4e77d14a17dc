"""Stage I model (paper 3.2, Fig. 1): the fMRI side and the adapted video side, and their tokens.

:class:`Stage1Model` joins the 3D-CNN tokenizer, the SC-MBM encoder with adaptors and the
projection adaptor (fMRI tokens ``z``, (B, L, H)) with the pretrained video branch's adapted
Q-Formers (video tokens ``x``, (B, L, H)); :class:`VideoInputs` holds what the video side
reads per clip; :func:`embed_fmri` and :func:`embed_clips` compute the tokens of many trials
or clips. Training is :mod:`llm4brain.training.stage1`, retrieval scoring
:mod:`llm4brain.evaluation.stage1`.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .adaptors import add_adaptors
from .bridge import VoxelReadout, build_projector
from .llm import freeze

__all__ = ["ENCODER_TRAINABLE", "Stage1Model", "build_stage1_model", "trainable_names",
           "VideoInputs", "embed_fmri", "embed_clips"]


#: Encoder parameters trained besides the adaptors (name prefixes inside ``FMRIEncoder``).
ENCODER_TRAINABLE = ("tokenizer.", "embed_proj.")


class Stage1Model(nn.Module):
    """fMRI side (tokenizer + adapted SC-MBM encoder + projection) and video side (adapted
    Q-Formers) of Stage I.

    Parameters
    ----------
    encoder : FMRIEncoder
        With adaptors (:func:`llm4brain.models.adaptors.add_adaptors`).
    branch : VideoBranch
        The pretrained video branch, with adaptors in its video (and frame) Q-Former.
    projector : nn.Module
        ``(B, N, De) -> (B, L, H)`` (:func:`llm4brain.models.bridge.build_projector`).
    qformer_adaptors : {"video", "both", "none"}
        ``video``/``none``: the video input of :meth:`forward` is the frozen frame Q-Former's
        output (B, F, Nq, H); ``both``: frame features (B, F, P, C).
    readout : VoxelReadout, optional
        Added to the projector's tokens (``stage1.voxel_readout``).
    input_mask : bool array (X, Y, Z), optional
        ``stage1.input_voxels``: every volume is multiplied by it before the tokenizer (a
        buffer, saved with the checkpoint; :func:`llm4brain.training.stage1.fit_input_mask`
        sets it to the selected voxels).

    Notes
    -----
    :meth:`train` keeps the frozen parts (encoder blocks, video branch) in eval mode, so
    their dropout never fires; only the tokenizer and the projector switch to train mode.
    """

    def __init__(self, encoder: nn.Module, branch: nn.Module, projector: nn.Module,
                 qformer_adaptors: str = "video", readout: nn.Module | None = None,
                 input_mask=None):
        super().__init__()
        if qformer_adaptors not in ("video", "both", "none"):
            raise ValueError(f"stage1.qformer_adaptors = {qformer_adaptors!r}: use video, both "
                             f"or none")
        self.encoder = encoder
        self.branch = branch
        self.projector = projector
        self.readout = readout
        self.qformer_adaptors = qformer_adaptors
        if input_mask is None:
            self.input_mask = None
        else:
            self.register_buffer("input_mask", torch.as_tensor(np.asarray(input_mask, bool),
                                                               dtype=torch.float32))

    @property
    def n_tokens(self) -> int:
        """L, the number of video (and fMRI) tokens."""
        return int(self.branch.num_tokens)

    @property
    def video_input(self) -> str:
        """``frame_tokens`` or ``features``: what :meth:`video_tokens` expects."""
        return "features" if self.qformer_adaptors == "both" else "frame_tokens"

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.encoder.eval()
            self.branch.eval()
            self.encoder.tokenizer.train()
        return self

    def fmri_tokens(self, blocks: torch.Tensor) -> torch.Tensor:
        """fMRI tokens z of blocks (B, T, X, Y, Z): shape (B, L, H) (projector of the encoder
        tokens, plus the voxel read-out when there is one); with an input mask the tokenizer
        reads the masked volumes, the read-out the volumes as they are."""
        if self.concepts:
            return self.projector.mix(self.concept_logits(blocks))
        z = self.projector(self.encoder(self._masked(blocks)))
        return z if self.readout is None else z + self.readout(blocks)

    def _masked(self, blocks: torch.Tensor) -> torch.Tensor:
        """What the tokenizer reads: the blocks times the input mask, when there is one."""
        return blocks if self.input_mask is None else blocks * self.input_mask.to(blocks.dtype)

    @property
    def concepts(self) -> bool:
        """Whether the projector is a concept bottleneck (``stage1.projector: concept``)."""
        return bool(getattr(self.projector, "reads_voxels", False))

    def concept_logits(self, blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        """``stage1.projector: concept``: per concept, the heads' logits (B, values)."""
        return self.projector.logits(self.encoder(self._masked(blocks)), blocks)

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Video tokens x (B, L, H) from frame-Q-Former outputs (B, F, Nq, H) or, with
        ``qformer_adaptors='both'``, from frame features (B, F, P, C)."""
        if self.video_input == "features":
            video = self.branch.frame_tokens(video)
        return self.branch.video_qformer(video.float())

    def forward(self, blocks: torch.Tensor, video: torch.Tensor):
        """``(z, x)``, each (B, L, H)."""
        return self.fmri_tokens(blocks), self.video_tokens(video)


def build_stage1_model(cfg, encoder: nn.Module, branch: nn.Module,
                       mask=None, concept_sizes: dict | None = None) -> Stage1Model:
    """Stage I model from a pretrained encoder and video branch (both deep-copied).

    Parameters
    ----------
    cfg : Config
        ``cfg.adaptor`` (rank, alpha, non-linearity, targets), ``cfg.stage1`` (projector,
        ``qformer_adaptors``), ``cfg.run.seed``.
    encoder : FMRIEncoder
        MAE-pretrained (``load_pretrained_mae(...).encoder``).
    branch : VideoBranch
        Pretrained (``load_video_llm(cfg).branch``).
    mask : bool array (X, Y, Z), optional
        The trial cache's brain mask; needed with ``stage1.voxel_readout`` (the read-out
        starts at zero: :func:`llm4brain.training.stage1.train_stage1` fits it) and with
        ``stage1.input_voxels`` (the input mask starts as the brain mask;
        :func:`~llm4brain.training.stage1.train_stage1` narrows it to the selected voxels).
    concept_sizes : dict concept -> number of values
        Needed with ``stage1.projector: concept`` (its heads' sizes;
        :func:`llm4brain.training.concepts.concept_values` gives them from the training trials).

    Returns
    -------
    Stage1Model
        Trainable: tokenizer (+ width projection), encoder adaptors (or, with
        ``stage1.train_encoder``, the whole encoder but its positions), Q-Former adaptors,
        projector, and the voxel read-out with ``voxel_readout: ridge-tuned``. Everything
        else has ``requires_grad=False``. With a read-out the projector's last layer starts
        at zero, so the untrained model's fMRI tokens are the read-out's.
    """
    enc = freeze(copy.deepcopy(encoder))
    br = freeze(copy.deepcopy(branch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed + 7)
        if cfg.stage1.encoder_adaptors and not cfg.stage1.train_encoder:  # full training needs none
            add_adaptors(enc, cfg, trainable=ENCODER_TRAINABLE)
        where = cfg.stage1.qformer_adaptors
        if where == "video":
            add_adaptors(br.video_qformer, cfg)
        elif where == "both":
            add_adaptors(br, cfg)
    full = bool(cfg.stage1.train_encoder)
    for name, p in enc.named_parameters():           # pos_embed / cls token stay frozen
        if (name.startswith(ENCODER_TRAINABLE) or "lora_" in name
                or (full and not name.startswith(("pos_embed", "cls_token")))):
            p.requires_grad_(True)
    hidden = int(br.proj.in_features)
    if cfg.stage1.projector == "concept" and not concept_sizes:
        raise ValueError("stage1.projector = 'concept' needs the concepts' sizes: "
                         "build_stage1_model(cfg, encoder, branch, mask, concept_sizes=...)")
    proj = build_projector(cfg, int(enc.embed_dim), hidden, int(br.num_tokens),
                           n_input_tokens=int(enc.n_tokens), sizes=concept_sizes)
    readout = None
    kind = cfg.stage1.voxel_readout
    if kind != "none":
        if mask is None:
            raise ValueError(f"stage1.voxel_readout = {kind!r} needs the trial cache's brain "
                             f"mask: build_stage1_model(cfg, encoder, branch, mask=tc.mask)")
        readout = VoxelReadout(mask, int(br.num_tokens), hidden, cfg.stage1.voxel_readout_rank)
        readout.requires_grad_(kind == "ridge-tuned")
        last = [m for m in proj.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
    input_mask = None
    if cfg.stage1.input_voxels:
        if mask is None:
            raise ValueError(f"stage1.input_voxels = {cfg.stage1.input_voxels} needs the trial "
                             f"cache's brain mask: build_stage1_model(cfg, encoder, branch, "
                             f"mask=tc.mask)")
        input_mask = np.asarray(mask, bool)
    return Stage1Model(enc, br, proj, cfg.stage1.qformer_adaptors, readout, input_mask)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


class VideoInputs:
    """What the video side of Stage I reads per clip, addressed by ``stim_file``.

    With ``qformer_adaptors`` ``video``/``none`` the frozen frame Q-Former's outputs
    (F, Nq, H) of every needed clip are computed once and kept (float16); with ``both``
    frame features (F, P, C) are read from the frame-feature cache on demand.

    Parameters
    ----------
    model : Stage1Model
    features : FrameFeatureCache
        :func:`llm4brain.training.vlpretrain.video_features`.
    stim_files : sequence of str
        Clips that will be asked for (ignored with ``both``).
    batch_size : int
    progress : bool
    """

    def __init__(self, model: Stage1Model, features, stim_files: Sequence[str] = (),
                 batch_size: int = 64, progress: bool = False):
        self.features = features
        self.kind = model.video_input
        self._rows: dict[str, int] = {}
        self._store = None
        if self.kind == "frame_tokens":
            files = list(dict.fromkeys(str(s) for s in stim_files))
            self._rows = {s: i for i, s in enumerate(files)}
            out = []
            dev = next(model.branch.parameters()).device
            with torch.no_grad():
                for s in tqdm(range(0, len(files), batch_size), desc="frame Q-Former",
                              disable=not progress):
                    x = features.get(files[s:s + batch_size]).to(dev)
                    out.append(model.branch.frame_tokens(x).to(torch.float16).cpu())
            self._store = torch.cat(out) if out else None

    def __len__(self) -> int:
        return len(self._rows) if self.kind == "frame_tokens" else len(self.features.index)

    def get(self, stim_files: Sequence[str]) -> torch.Tensor:
        """float32 tensor (n, F, Nq, H) (frame tokens) or (n, F, P, C) (features)."""
        files = [str(s) for s in stim_files]
        if self.kind == "features":
            return self.features.get(files)
        try:
            idx = torch.as_tensor([self._rows[s] for s in files], dtype=torch.long)
        except KeyError as exc:
            raise KeyError(f"clip {exc.args[0]} was not prepared in VideoInputs; pass it in "
                           f"stim_files when building them") from None
        return self._store[idx].float()


@torch.no_grad()
def embed_fmri(model: Stage1Model, get_blocks: Callable[[np.ndarray], np.ndarray], n: int,
               batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """fMRI tokens of ``n`` trials: float32 tensor (n, L, H) on the CPU.

    Parameters
    ----------
    model : Stage1Model
    get_blocks : callable ``positions -> array (b, T, X, Y, Z)``
        E.g. ``view.blocks`` of a guard view.
    n : int
    """
    model.eval()
    dev = next(model.projector.parameters()).device
    out = []
    for s in tqdm(range(0, n, batch_size), desc="fMRI tokens", disable=not progress):
        b = torch.from_numpy(np.asarray(get_blocks(np.arange(s, min(n, s + batch_size))),
                                        dtype=np.float32))
        out.append(model.fmri_tokens(b.to(dev)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def embed_clips(model: Stage1Model, video: VideoInputs, stim_files: Sequence[str],
                batch_size: int = 64) -> torch.Tensor:
    """Video tokens (n, L, H) of clips (float32, CPU)."""
    model.eval()
    dev = next(model.projector.parameters()).device
    files = list(stim_files)
    out = [model.video_tokens(video.get(files[s:s + batch_size]).to(dev)).float().cpu()
           for s in range(0, len(files), batch_size)]
    return torch.cat(out) if out else torch.empty(0)
