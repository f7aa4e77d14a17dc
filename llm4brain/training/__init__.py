"""Training: the paper's losses (eq. 1-6), DANCE's loss, the single training loop (``fit``),
the leakage guard, and the trainers (MAE, video-LM, Stage I, II; the frame VAE and the
dual-stream heads are trained in :mod:`llm4brain.reconstruction.train`)."""
from .da import dance_loss
from .guard import (LeakageError, source_view, target_adaptation_view,
                    target_evaluation_view)
from .loop import FitResult, checkpoint_path, fit, load_checkpoint
from .losses import (clip_loss, entropy_separation_loss, l2l1_loss,
                     neighbourhood_clustering_loss, stage1_loss, stage2_loss)

__all__ = ["dance_loss", "LeakageError", "source_view", "target_adaptation_view",
           "target_evaluation_view", "FitResult", "checkpoint_path", "fit", "load_checkpoint",
           "clip_loss", "entropy_separation_loss", "l2l1_loss", "neighbourhood_clustering_loss",
           "stage1_loss", "stage2_loss"]
