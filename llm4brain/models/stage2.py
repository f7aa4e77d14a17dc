"""Stage II model (paper 3.2): the fMRI -> LLM bridge, DANCE's head and memory bank, a frozen LLM.

:class:`Stage2Model` turns frozen Stage I fMRI tokens into a prefix of the frozen LLM's chat
prompt (:func:`llm4brain.models.video_llm.splice_prefix`). Training (eqs. 3-6) is
:mod:`llm4brain.training.stage2`; decoding and its controls are
:mod:`llm4brain.evaluation.decoding`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .bridge import build_bridge
from .dance import CosineClassifier, MemoryBank
from .precision import resolve_bf16
from .video_llm import format_prompt, splice_prefix

__all__ = ["Stage2Model", "build_stage2_model", "zero_shot_model", "stage2_seed"]


class Stage2Model(nn.Module):
    """Bridge (+ DANCE head and memory bank) in front of a frozen LLM.

    The Stage II loss of a batch (eq. 6) is :func:`llm4brain.training.stage2.stage2_loss_fn`.

    Parameters
    ----------
    bridge : LLMBridge
    llm : LLMBackend
        Frozen; kept as a plain attribute (not in ``state_dict``/``parameters``).
    llm_cfg : LLMConfig
        Prompt format and generation settings.
    stage2_cfg : Stage2Config
    n_classes : int, optional
        C; required with domain adaptation.
    n_target : int, optional
        Rows of the memory bank (adaptation trials); required with domain adaptation.
    seed : int
    """

    def __init__(self, bridge: nn.Module, llm, llm_cfg, stage2_cfg, *,
                 n_classes: int | None = None, n_target: int | None = None,
                 domain_adaptation: bool | None = None, seed: int = 0):
        super().__init__()
        self.bridge = bridge
        self.llm = llm
        self.llm_cfg = llm_cfg
        self.cfg = stage2_cfg
        self.domain_adaptation = bool(stage2_cfg.domain_adaptation if domain_adaptation is None
                                      else domain_adaptation)
        self._prompts: dict[str, str] = {}
        if self.domain_adaptation:
            if not n_classes or n_classes < 2 or not n_target or n_target < 2:
                raise ValueError(f"domain adaptation needs >= 2 classes and >= 2 target "
                                 f"adaptation trials (got {n_classes}, {n_target}); set "
                                 f"stage2.domain_adaptation: false otherwise")
            dim = int(bridge.proj.out_features)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 31)
                self.classifier = CosineClassifier(dim, n_classes,
                                                   stage2_cfg.classifier_temperature)
            self.bank = MemoryBank(n_target, dim, stage2_cfg.memory_momentum, seed)
        else:
            self.classifier = None
            self.bank = None
        self.n_classes = int(n_classes) if n_classes else 0

    def use_bf16(self, device) -> bool:
        """``stage2.bf16`` (bool or ``"auto"``) decided for ``device``: the ``auto`` decision
        is made once per process and device type
        (:func:`llm4brain.models.precision.resolve_bf16`), not every step."""
        return resolve_bf16(self.cfg.bf16, device, name="stage2.bf16")

    # --------------------------------------------------------------- prompts and prefixes
    def prompt(self, instruction: str) -> str:
        """Chat prompt of ``instruction`` with the placeholder (cached)."""
        if instruction not in self._prompts:
            c = self.llm_cfg
            self._prompts[instruction] = format_prompt(
                self.llm.tokenizer, instruction, placeholder=c.placeholder,
                system_prompt=c.system_prompt, template=c.prompt_template)
        return self._prompts[instruction]

    def prompt_batch(self, z: torch.Tensor, instructions: Sequence[str],
                     answers: Sequence[str] | None = None,
                     prompts: Sequence[str] | None = None):
        """:class:`~llm4brain.models.video_llm.PromptBatch` of fMRI tokens z (B, L, H).

        ``prompts`` (rendered, holding the placeholder) replace the single-turn prompts of
        ``instructions`` (multi-turn dialogue examples).
        """
        dev = next(self.bridge.parameters()).device
        prefix = self.bridge(z.to(dev))
        if prompts is None:
            prompts = [self.prompt(i) for i in instructions]
        return splice_prefix(self.llm, list(prompts), prefix,
                             placeholder=self.llm_cfg.placeholder, answers=answers,
                             max_answer_tokens=self.llm_cfg.max_answer_tokens), prefix

    @torch.no_grad()
    def target_embeddings(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Pooled bridge features (n, D) of fMRI tokens (n, L, H) (DA feature space)."""
        dev = next(self.bridge.parameters()).device
        out = [self.bridge.features(self.bridge(z[s:s + batch_size].to(dev))).float().cpu()
               for s in range(0, len(z), batch_size)]
        return torch.cat(out) if out else torch.empty(0)



def build_stage2_model(cfg, video_proj: nn.Linear, llm, *, n_classes: int | None = None,
                       n_target: int | None = None,
                       domain_adaptation: bool | None = None) -> Stage2Model:
    """Bridge initialised from ``video_proj`` (``VideoBranch.proj``) + optional DA head."""
    bridge = build_bridge(cfg, video_proj)
    return Stage2Model(bridge, llm, cfg.llm, cfg.stage2, n_classes=n_classes,
                       n_target=n_target, domain_adaptation=domain_adaptation,
                       seed=stage2_seed(cfg))


def zero_shot_model(cfg, vlm) -> Stage2Model:
    """The untrained Stage II of a video-LLM ``vlm``: its own video projection as the bridge,
    no domain adaptation. What the semantic read-out's prototype tokens and the zero-shot
    decodes (Stage I tokens with no Stage II training) are read through."""
    return build_stage2_model(cfg, vlm.branch.proj, vlm.llm, domain_adaptation=False)


def stage2_seed(cfg) -> int:
    """Stage II's seed: ``stage2.seed``, or ``run.seed`` when it is -1."""
    return int(cfg.run.seed if cfg.stage2.seed < 0 else cfg.stage2.seed)
