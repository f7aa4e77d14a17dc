"""Video-LLaMA's vision-language branch: frame Q-Former, video Q-Former, projection.

Paper 3.1: "A Query-Former is an encoder-only transformer with 32 learned query tokens as
input: it contextualizes the query tokens -- via the cross-attention mechanism -- with the
representations of the image patches encoded by a (frozen) vision encoder. The visual tokens
that are the output of the Q-Former are then projected into the LLM embedding space with a
single linear projection." Video-LLaMA adds a 2-layer *video* Q-Former over the frame query
outputs plus a learned frame position embedding.

Shapes (B clips, F frames, P patches a frame, C encoder channels, Nq frame queries,
H Q-Former width, Nv video queries, D LLM width)::

    features (B, F, P, C) -> ln_vision -> frame Q-Former -> (B, F, Nq, H)
      + frame position embedding -> video Q-Former -> (B, Nv, H) -> proj -> (B, Nv, D)

Both Q-Formers are ``transformers.Blip2QFormerModel``. :func:`map_videollama_state_dict`
renames the keys of Video-LLaMA / BLIP-2 (LAVIS) checkpoints onto this module.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_torch_file
from .llm import resolve_model_path

__all__ = ["FrameQFormer", "VideoQFormer", "VideoBranch", "build_video_branch",
           "qformer_config", "map_videollama_state_dict", "load_branch_checkpoint"]


def qformer_config(hidden: int, layers: int, heads: int, intermediate: int,
                   encoder_hidden: int, cross_attention_freq: int = 1, dropout: float = 0.1):
    """A ``Blip2QFormerConfig`` (eager attention so that attention maps can be returned)."""
    from transformers import Blip2QFormerConfig

    conf = Blip2QFormerConfig(hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=intermediate,
                              encoder_hidden_size=encoder_hidden,
                              cross_attention_frequency=cross_attention_freq,
                              hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    conf._attn_implementation = "eager"
    return conf


class FrameQFormer(nn.Module):
    """Learned queries cross-attending to the patch tokens of one frame (BLIP-2 Q-Former).

    Parameters
    ----------
    encoder_dim : int
        Channels C of the patch tokens.
    num_queries : int
        Nq learned query tokens (32 in BLIP-2 and the paper).
    hidden, layers, heads, intermediate, cross_attention_freq, dropout
        Q-Former size (see :func:`qformer_config`).
    """

    def __init__(self, encoder_dim: int, num_queries: int = 32, hidden: int = 256,
                 layers: int = 2, heads: int = 4, intermediate: int = 512,
                 cross_attention_freq: int = 1, dropout: float = 0.1):
        super().__init__()
        from transformers import Blip2QFormerModel

        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, hidden) * 0.02)
        self.qformer = Blip2QFormerModel(qformer_config(hidden, layers, heads, intermediate,
                                                        encoder_dim, cross_attention_freq,
                                                        dropout))

    def forward(self, patches: torch.Tensor, output_attentions: bool = False):
        """Query tokens of each input.

        Parameters
        ----------
        patches : tensor of shape (N, P, C)
        output_attentions : bool
            Also return the cross-attention maps, a tuple (one per cross-attention layer) of
            tensors (N, heads, Nq, P).

        Returns
        -------
        tensor of shape (N, Nq, H) [, cross-attentions]
        """
        q = self.query_tokens.expand(patches.shape[0], -1, -1)
        out = self.qformer(query_embeds=q, encoder_hidden_states=patches,
                           output_attentions=output_attentions, return_dict=True)
        if output_attentions:
            return out.last_hidden_state, out.cross_attentions
        return out.last_hidden_state


class VideoQFormer(nn.Module):
    """Video-LLaMA's video Q-Former: frame position embedding + Q-Former over all frames.

    Parameters
    ----------
    hidden : int
        Width H of the frame query tokens (= width of this Q-Former).
    num_queries : int
        Nv video query tokens (Video-LLaMA: 32).
    layers : int
        Video-LLaMA: 2.
    max_frame_pos : int
        Rows of the frame position embedding (Video-LLaMA: 32).
    """

    def __init__(self, hidden: int = 256, num_queries: int = 8, layers: int = 2, heads: int = 4,
                 intermediate: int = 512, max_frame_pos: int = 32, dropout: float = 0.1):
        super().__init__()
        from transformers import Blip2QFormerModel

        self.frame_position = nn.Embedding(max_frame_pos, hidden)
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, hidden) * 0.02)
        self.qformer = Blip2QFormerModel(qformer_config(hidden, layers, heads, intermediate,
                                                        hidden, 1, dropout))

    def forward(self, frame_tokens: torch.Tensor, output_attentions: bool = False):
        """Video tokens from per-frame query tokens.

        Parameters
        ----------
        frame_tokens : tensor of shape (B, F, Nq, H)
            ``F <= max_frame_pos``. (Any (B, N, H) token sequence is accepted too, e.g. fMRI
            tokens; then no frame position is added.)

        Returns
        -------
        tensor of shape (B, Nv, H) [, cross-attentions (B, heads, Nv, F * Nq) per layer]
        """
        if frame_tokens.dim() == 4:
            B, F, Nq, H = frame_tokens.shape
            if F > self.frame_position.num_embeddings:
                raise ValueError(f"{F} frames exceed video.max_frame_pos = "
                                 f"{self.frame_position.num_embeddings}")
            pos = self.frame_position(torch.arange(F, device=frame_tokens.device))
            frame_tokens = (frame_tokens + pos[None, :, None, :]).reshape(B, F * Nq, H)
        q = self.query_tokens.expand(frame_tokens.shape[0], -1, -1)
        out = self.qformer(query_embeds=q, encoder_hidden_states=frame_tokens,
                           output_attentions=output_attentions, return_dict=True)
        if output_attentions:
            return out.last_hidden_state, out.cross_attentions
        return out.last_hidden_state


class VideoBranch(nn.Module):
    """Frame features -> video tokens in the LLM's embedding space.

    Parameters
    ----------
    encoder_dim : int
        Channels C of the frame encoder's patch tokens.
    llm_dim : int
        Embedding width D of the LLM.
    video_cfg : VideoConfig
        Sizes (``num_query_tokens``, ``qformer_*``, ``video_qformer_layers``,
        ``num_video_query_tokens``, ``max_frame_pos``).
    """

    def __init__(self, encoder_dim: int, llm_dim: int, video_cfg):
        super().__init__()
        v = video_cfg
        self.ln_vision = nn.LayerNorm(encoder_dim)
        self.frame_qformer = FrameQFormer(encoder_dim, v.num_query_tokens, v.qformer_hidden,
                                          v.qformer_layers, v.qformer_heads,
                                          v.qformer_intermediate,
                                          v.qformer_cross_attention_freq, v.qformer_dropout)
        self.video_qformer = VideoQFormer(v.qformer_hidden, v.num_video_query_tokens,
                                          v.video_qformer_layers, v.qformer_heads,
                                          v.qformer_intermediate, v.max_frame_pos,
                                          v.qformer_dropout)
        self.proj = nn.Linear(v.qformer_hidden, llm_dim)
        self.encoder_dim, self.llm_dim = encoder_dim, llm_dim

    @property
    def num_tokens(self) -> int:
        """Number Nv of video tokens handed to the LLM."""
        return int(self.video_qformer.query_tokens.shape[1])

    def frame_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Frame Q-Former outputs, shape (B, F, Nq, H), for features (B, F, P, C)."""
        B, F, P, C = features.shape
        x = self.ln_vision(features.reshape(B * F, P, C).float())
        q = self.frame_qformer(x)
        return q.reshape(B, F, q.shape[1], q.shape[2])

    def video_hidden(self, features: torch.Tensor) -> torch.Tensor:
        """Video Q-Former outputs (before the projection), shape (B, Nv, H)."""
        return self.video_qformer(self.frame_tokens(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Video tokens X, shape (B, Nv, D), for frame features (B, F, P, C)."""
        return self.proj(self.video_hidden(features))

    @torch.no_grad()
    def frame_attention(self, features: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Cross-attention of the frame queries over the patches (for plots).

        Returns
        -------
        tensor of shape (B, F, Nq, P): head-averaged attention of cross-attention layer
        ``layer``.
        """
        B, F, P, C = features.shape
        was = self.training
        self.eval()                      # no attention dropout in the maps
        try:
            x = self.ln_vision(features.reshape(B * F, P, C).float())
            _, att = self.frame_qformer(x, output_attentions=True)
        finally:
            self.train(was)
        a = att[layer].mean(1)
        return a.reshape(B, F, a.shape[1], P)


def build_video_branch(cfg, encoder_dim: int, llm_dim: int) -> VideoBranch:
    """The branch sized by ``cfg.video`` (random init; see :func:`load_branch_checkpoint`)."""
    v = cfg.video
    if v.n_frames > v.max_frame_pos:
        raise ValueError(f"video.n_frames = {v.n_frames} > video.max_frame_pos = "
                         f"{v.max_frame_pos}; raise max_frame_pos or use fewer frames")
    return VideoBranch(encoder_dim, llm_dim, v)


# --------------------------------------------------------------------- checkpoint mapping
_LAVIS_PREFIXES = (("video_Qformer.bert.", "video_qformer.qformer."),
                   ("Qformer.bert.", "frame_qformer.qformer."))
_DIRECT = {"video_query_tokens": "video_qformer.query_tokens",
           "video_frame_position_embedding.weight": "video_qformer.frame_position.weight",
           "query_tokens": "frame_qformer.query_tokens",
           "llama_proj.weight": "proj.weight", "llama_proj.bias": "proj.bias",
           "ln_vision.weight": "ln_vision.weight", "ln_vision.bias": "ln_vision.bias",
           # transformers BLIP-2 folder (the converted LAVIS weights)
           "vision_model.post_layernorm.weight": "ln_vision.weight",
           "vision_model.post_layernorm.bias": "ln_vision.bias"}
# text-only parts of the LAVIS BERT Q-Former that the query path does not use
_SKIP = re.compile(r"(\.cls\.|embeddings\.(word|position)_embeddings|embeddings\.position_ids|"
                   r"layer\.\d+\.(intermediate|output)\.)")


def map_videollama_state_dict(sd: dict) -> dict:
    """Rename Video-LLaMA / BLIP-2 keys to :class:`VideoBranch` keys.

    Handles LAVIS-style checkpoints (``Qformer.bert.encoder.layer.0.attention.self.query``,
    ``video_Qformer.bert...``, ``query_tokens``, ``video_query_tokens``,
    ``video_frame_position_embedding``, ``llama_proj``, ``ln_vision``) and ``transformers``
    BLIP-2 folders (``qformer.*``, ``query_tokens``, ``vision_model.post_layernorm``).
    Keys that belong to neither (the ViT, the LLM, audio branch, text heads) are dropped.

    Returns
    -------
    dict : branch key -> tensor
    """
    out = {}
    for k, v in sd.items():
        if k in _DIRECT:
            out[_DIRECT[k]] = v
            continue
        new = None
        for src, dst in _LAVIS_PREFIXES:
            if k.startswith(src):
                if _SKIP.search(k):
                    break
                rest = k[len(src):]
                rest = rest.replace("embeddings.LayerNorm.", "layernorm.")
                rest = rest.replace(".attention.self.", ".attention.attention.")
                rest = rest.replace(".crossattention.self.", ".crossattention.attention.")
                new = dst + rest
                break
        if new is None and k.startswith("qformer.") and not k.startswith("qformer.embeddings"):
            new = "frame_qformer." + k
        if new is not None:
            out[new] = v
    return out


def _read_state_dict(path: Path) -> dict:
    """Tensors of a checkpoint that :func:`map_videollama_state_dict` keeps.

    A folder is read shard by shard with ``safetensors.safe_open`` and only the Q-Former /
    projection tensors are loaded (a BLIP-2 folder also holds a multi-GB language model).
    A ``.pth`` is read by :func:`llm4brain.models.checkpoints.load_torch_file`
    (``weights_only=True``, else a restricted unpickler that runs none of the file's code).
    """
    if path.is_dir():
        from safetensors import safe_open

        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{path} holds no *.safetensors weights")
        sd = {}
        for f in files:
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    if map_videollama_state_dict({k: None}):
                        sd[k] = h.get_tensor(k)
        return sd

    obj = load_torch_file(path)
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds no state dict (looked under 'model', 'state_dict')")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def load_branch_checkpoint(branch: VideoBranch, value: str, key: str,
                           required: tuple[str, ...] = ()) -> list[str]:
    """Load a Video-LLaMA / BLIP-2 checkpoint (local path) into ``branch``.

    Parameters
    ----------
    branch : VideoBranch
    value : str
        The configured path (``${VARS}`` expand).
    key : str
        Config key it came from (``video.checkpoint`` or ``video.qformer_checkpoint``).
    required : tuple of str
        Branch key prefixes that must be present after mapping (e.g. ``("video_qformer.",
        "proj.")`` for a Video-LLaMA checkpoint).

    Returns
    -------
    list of str : the branch keys that were loaded.

    Raises
    ------
    FileNotFoundError
        The file is missing (the message names it and ``key``).
    ValueError
        Required parts are absent or shapes disagree with ``cfg.video``.
    """
    path = resolve_model_path(value, key, what="Video-LLaMA / BLIP-2 checkpoint")
    mapped = map_videollama_state_dict(_read_state_dict(path))
    own = branch.state_dict()
    missing = [r for r in required if not any(k.startswith(r) for k in mapped)]
    if missing:
        raise ValueError(f"{path} (config key '{key}') has no weights for {missing}; is it a "
                         f"Video-LLaMA VL-branch checkpoint?")
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in mapped.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if "video_qformer.frame_position.weight" in [b[0] for b in bad]:
        # fewer rows than the checkpoint: keep the first max_frame_pos rows
        w = mapped["video_qformer.frame_position.weight"]
        n = own["video_qformer.frame_position.weight"].shape[0]
        if w.shape[0] >= n and w.shape[1] == own["video_qformer.frame_position.weight"].shape[1]:
            mapped["video_qformer.frame_position.weight"] = w[:n]
            bad = [b for b in bad if b[0] != "video_qformer.frame_position.weight"]
    if bad:
        k, got, want = bad[0]
        raise ValueError(f"{path} (config key '{key}'): {k} has shape {got}, the branch built "
                         f"from cfg.video expects {want}; set video.qformer_hidden / "
                         f"num_query_tokens / num_video_query_tokens / qformer_layers to the "
                         f"checkpoint's sizes ({len(bad)} mismatches)")
    unknown = [k for k in mapped if k not in own]
    if unknown:
        raise ValueError(f"{path} (config key '{key}'): {len(unknown)} keys do not fit the "
                         f"branch, e.g. {unknown[:3]}; check video.qformer_layers / "
                         f"video_qformer_layers / qformer_cross_attention_freq")
    branch.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)
    return sorted(mapped)
