"""Models: fMRI tokenizers (3D CNN, NVL), the SC-MBM encoder and MAE, nonlinear low-rank
adaptors (peft), MinD-Vis checkpoint mapping, the video branch and LLM backends, and the
Stage I / Stage II models (with DANCE's memory bank and classifier), and NVL's visual side:
the embedded frame VAE, the dual-stream heads and the unCLIP decoder of GPU profiles.

Submodules are imported lazily by their users (``from llm4brain.models.encoder import ...``)
so that ``import llm4brain.models`` stays cheap.
"""
__all__ = ["tokenizers", "encoder", "adaptors", "checkpoints", "frame_encoders", "qformer",
           "llm", "video_llm", "bridge", "precision", "dance", "stage1", "stage2", "vae",
           "dual_stream", "diffusion"]
