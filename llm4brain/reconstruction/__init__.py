"""Visual reconstruction (NVL's dual-stream alignment), in one place, like :mod:`llm4brain.dialogue`.

* :mod:`.vae` -- the embedded frame VAE (key frames, 32 x 32) and its loss;
* :mod:`.dual_stream` -- the high- and low-level heads on the pooled Stage I embedding;
* :mod:`.diffusion` -- the Stable unCLIP decoder of GPU profiles (``recon.decoder: diffusion``);
* :mod:`.train` -- training the VAE (pretraining corpus only) and the heads (training subjects);
* :mod:`.metrics` -- PixCorr, SSIM, two-way identification, NVL's table;
* :mod:`.run` -- :func:`~.run.reconstruct_run`, notebook 08's whole chain for a run;
* :mod:`.plots` -- the reconstruction grid and the metric bars.

Submodules are imported by their users (``from llm4brain.reconstruction.run import
reconstruct_run``) so that importing the package stays cheap.
"""
__all__ = ["vae", "dual_stream", "diffusion", "train", "metrics", "run", "plots"]
