"""Models: fMRI tokenizers (3D CNN, NVL), the SC-MBM encoder and MAE, nonlinear low-rank
adaptors (peft), MinD-Vis checkpoint mapping, the video branch and LLM backends, and the
Stage I / Stage II models (with DANCE's memory bank and classifier). NVL's visual side (frame
VAE, dual-stream heads, unCLIP decoder) is in :mod:`llm4brain.reconstruction`.

Submodules are imported lazily by their users (``from llm4brain.models.encoder import ...``)
so that ``import llm4brain.models`` stays cheap.
"""
__all__ = ["tokenizers", "encoder", "adaptors", "checkpoints", "frame_encoders", "qformer",
           "llm", "video_llm", "bridge", "precision", "dance", "stage1", "stage2"]
