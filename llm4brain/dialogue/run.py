"""The trained models of a run, opened for dialogue with a target subject's trials.

:func:`load_chat_models` reads what notebooks 01-05 wrote for a profile — the trial cache
and splits, the pretrained video-LLM (with the frozen LLM), the Stage I model and the Stage II
bridge — and :meth:`ChatModels.conversation` binds a :class:`Conversation` to one target
subject's evaluation trial: its fMRI block -> encoder -> Stage I projection -> Stage II bridge
-> tokens in the LLM's embedding space; or, with ``video=True``, to the video tokens of the
clip that trial showed (the reference: what the video-LLM itself says).

Trials are numbered per subject: trial ``n`` is the subject's n-th **evaluation** trial
(0-based) in trial-cache order, the order of the Stage II decoding tables
(``results/stage2/fmri2text_*.tsv``). Only evaluation trials of target subjects are offered:
nothing of them was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import load_splits, load_stimuli, load_trial_cache
from ..models.stage1 import embed_fmri
from ..models.stage2 import build_stage2_model
from ..training.guard import target_evaluation_view
from ..training.loop import checkpoint_path, load_checkpoint
from ..training.stage1 import load_stage1
from ..training.stage2 import stage2_run_name
from ..training.vlpretrain import load_video_llm, video_features
from .conversation import Conversation

__all__ = ["ChatModels", "load_chat_models", "load_stage2_model", "stage2_checkpoint",
           "STAGE2_HOW_TO"]

#: How a run gets its Stage II model (named in errors).
STAGE2_HOW_TO = ("run notebook 05_stage2_domain_adaptation for this profile: `make smoke` "
                 "(profile smoke) or `make reproduce PROFILE={profile}` (or only up to it: "
                 "`make {run_dir}/notebooks/05_stage2_domain_adaptation.ipynb PROFILE={profile}`)")


def stage2_checkpoint(cfg, domain_adaptation: bool | None = None) -> Path:
    """``<run_dir>/checkpoints/<stage2 run name>/state.pt`` of ``cfg`` (may not exist)."""

    return checkpoint_path(cfg.run_dir, stage2_run_name(cfg, domain_adaptation))


def _how_to(cfg) -> str:
    return STAGE2_HOW_TO.format(profile=cfg.profile, run_dir=cfg.run_dir)


def _check_stage2(cfg, domain_adaptation: bool | None) -> Path:
    path = stage2_checkpoint(cfg, domain_adaptation)
    if not path.is_file():
        da = cfg.stage2.domain_adaptation if domain_adaptation is None else domain_adaptation
        raise FileNotFoundError(f"no trained Stage II model ({'with' if da else 'without'} "
                                f"domain adaptation) for profile {cfg.profile!r} at {path}: "
                                f"{_how_to(cfg)}")
    return path


def load_stage2_model(cfg, vlm, *, domain_adaptation: bool | None = None):
    """The trained Stage II model of ``cfg`` (bridge, and DA head when trained with one).

    Parameters
    ----------
    cfg : Config
    vlm : VideoLLM
        The pretrained video-LLM of the run (:func:`llm4brain.training.vlpretrain.load_video_llm`):
        its LLM and projection.
    domain_adaptation : bool, optional
        Which of notebook 05's two runs (default ``stage2.domain_adaptation``).

    Raises
    ------
    FileNotFoundError
        No finished Stage II run for these settings (says which notebook makes it).
    """

    path = _check_stage2(cfg, domain_adaptation)
    da = cfg.stage2.domain_adaptation if domain_adaptation is None else bool(domain_adaptation)
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]   # our own run
    n_classes = n_target = None
    if da:
        w = [v for k, v in state.items() if k.startswith("classifier.") and v.dim() == 2]
        b = [v for k, v in state.items() if k.startswith("bank.") and v.dim() == 2]
        if not w or not b:
            raise ValueError(f"the Stage II checkpoint {path} has no classifier or memory bank "
                             f"although its run name says domain adaptation: {_how_to(cfg)}")
        n_classes, n_target = int(w[0].shape[0]), int(b[0].shape[0])
    model = build_stage2_model(cfg, vlm.branch.proj, vlm.llm, n_classes=n_classes,
                               n_target=n_target, domain_adaptation=da)
    info = load_checkpoint(model, path)
    if not info.get("finished"):
        raise FileNotFoundError(f"the Stage II run at {path} is unfinished (step "
                                f"{info.get('step')}): {_how_to(cfg)}")
    return model.to(vlm.llm.device).eval()


def _subject_label(s) -> str:
    s = str(s)
    return s[4:] if s.startswith("sub-") else s


@dataclass
class ChatModels:
    """Everything a dialogue about a run's target trials needs (see :func:`load_chat_models`).

    Attributes
    ----------
    cfg : Config
    stage1 : Stage1Model
    stage2 : Stage2Model
    vlm : VideoLLM (its ``llm`` is the frozen LLM of both)
    trials : DataFrame
        Target subjects' evaluation trials: ``subject``, ``trial`` (per-subject number),
        ``trial_index`` (trial-cache row), ``clip_id``, ``stim_file``, ``class_name``.
    mask : bool array (X, Y, Z), optional
        The trial cache's brain mask (the grid of the blocks).
    affine : array (4, 4), optional
        Its affine (voxel -> world mm).
    """

    cfg: object
    stage1: object
    stage2: object
    vlm: object
    trials: pd.DataFrame
    mask: object = None
    affine: object = None
    _view: object = None
    _features: object = None

    @property
    def subjects(self) -> list[str]:
        """Target subjects, in split order."""
        return list(dict.fromkeys(self.trials["subject"]))

    @property
    def llm(self):
        return self.vlm.llm

    def trial(self, subject, trial: int) -> pd.Series:
        """The row of :attr:`trials` of ``subject``'s evaluation trial number ``trial``.

        Raises
        ------
        ValueError
            Unknown subject (names the target subjects) or trial out of range (names it).
        """
        s = _subject_label(subject)
        if s not in self.subjects:
            raise ValueError(f"subject {subject!r} is not a target subject of profile "
                             f"{self.cfg.profile!r}: choose one of "
                             f"{', '.join('sub-' + x for x in self.subjects)} (training subjects' "
                             f"trials were trained on; dialogue is for evaluation trials)")
        rows = self.trials[self.trials["subject"] == s]
        try:
            t = int(trial)
        except (TypeError, ValueError):
            raise ValueError(f"trial must be an integer, got {trial!r}") from None
        if not 0 <= t < len(rows):
            raise ValueError(f"trial {t} is out of range for sub-{s}: it has {len(rows)} "
                             f"evaluation trials, numbered 0..{len(rows) - 1}")
        return rows.iloc[t]

    @torch.no_grad()
    def brain_tokens(self, subject, trial: int) -> torch.Tensor:
        """Bridged fMRI tokens (N, D) of a trial (fMRI block -> encoder -> bridge)."""

        row = self.trial(subject, trial)
        pos = int(row["position"])
        z = embed_fmri(self.stage1, lambda p: self._view.blocks(np.asarray([pos])), 1)
        dev = next(self.stage2.bridge.parameters()).device
        return self.stage2.bridge(z.to(dev))[0]

    @torch.no_grad()
    def video_tokens(self, subject, trial: int) -> torch.Tensor:
        """Video tokens (N, D) of the clip a trial showed (the video-LLM's own input)."""
        row = self.trial(subject, trial)
        return self.vlm.encode_video(torch.as_tensor(
            np.asarray(self.features().get([str(row["stim_file"])]), dtype=np.float32)))[0]

    def features(self):
        """The frame-feature cache of the run's clips (built by notebook 04)."""
        if self._features is None:

            self._features = video_features(self.cfg, load_stimuli(self.cfg), progress=False)
        return self._features

    def conversation(self, subject, trial: int, *, video: bool = False, **kwargs
                     ) -> Conversation:
        """A :class:`Conversation` about a target subject's evaluation trial.

        Parameters
        ----------
        subject : str (``"04"`` or ``"sub-04"``)
        trial : int
            The subject's evaluation trial number (0-based; see :attr:`trials`).
        video : bool
            Bind the clip's video tokens instead of the fMRI (the reference).
        **kwargs
            :class:`Conversation` settings (``max_new_tokens``, ``do_sample``, ...); the
            defaults are the profile's ``llm`` settings, greedy.
        """
        row = self.trial(subject, trial)
        c = self.cfg.llm
        prefix = (self.video_tokens(subject, trial) if video
                  else self.brain_tokens(subject, trial))
        opts = dict(placeholder=c.placeholder, system_prompt=c.system_prompt,
                    max_new_tokens=max(int(c.max_new_tokens), 40), do_sample=False,
                    temperature=c.temperature, top_p=c.top_p, seed=int(self.cfg.run.seed))
        opts.update(kwargs)
        source = dict(profile=self.cfg.profile, subject=f"sub-{row['subject']}",
                      trial=int(row["trial"]), clip=str(row["clip_id"]),
                      tokens="video" if video else "fMRI")
        return Conversation(self.llm, prefix, source=source, **opts)


def load_chat_models(cfg, *, domain_adaptation: bool | None = None) -> ChatModels:
    """Open a run's trained models for dialogue (nothing is trained).

    Parameters
    ----------
    cfg : Config (``load_config(profile)``)
    domain_adaptation : bool, optional
        Which Stage II run (default ``stage2.domain_adaptation``).

    Raises
    ------
    FileNotFoundError
        When the run has no trained Stage II model (checked first; names the notebook and
        the ``make`` target that trains it), or misses an earlier notebook's output.
    """

    _check_stage2(cfg, domain_adaptation)
    splits_file = Path(cfg.run_dir) / "splits.json"
    if not splits_file.is_file():
        raise FileNotFoundError(f"no splits at {splits_file}: {_how_to(cfg)}")
    tc = load_trial_cache(cfg)
    splits = load_splits(splits_file)
    vlm = load_video_llm(cfg)
    stage1 = load_stage1(cfg, tc, vlm=vlm)
    stage2 = load_stage2_model(cfg, vlm, domain_adaptation=domain_adaptation)
    view = target_evaluation_view(tc, splits)
    t = view.trials
    trials = pd.DataFrame(dict(subject=view.subject, trial_index=view.rows,
                               clip_id=t["clip_id"].astype(str).to_numpy(),
                               stim_file=t["stim_file"].astype(str).to_numpy(),
                               class_name=t["class_name"].astype(str).to_numpy(),
                               position=np.arange(len(view))))
    trials = trials.sort_values(["subject", "trial_index"], kind="stable")
    trials["trial"] = trials.groupby("subject").cumcount()
    cols = ["subject", "trial", "trial_index", "clip_id", "stim_file", "class_name", "position"]
    return ChatModels(cfg, stage1, stage2, vlm, trials[cols].reset_index(drop=True),
                      np.asarray(tc.mask, bool), np.asarray(tc.affine, float), view)
