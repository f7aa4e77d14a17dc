"""Writing and reading short video clips (mp4/avi) for the stimulus pipeline.

``write_mp4`` pipes raw frames into the ffmpeg binary bundled by ``imageio-ffmpeg`` (libx264,
yuv420p, constant quality; one short-lived process a clip). ``write_mp4_batch`` streams many
equally-shaped clips through ONE ffmpeg process and splits them with the segment muxer at
forced key frames, which removes the ~20 ms process and encoder start-up per clip.
``read_frames`` decodes a clip with ``decord`` and samples ``n_frames`` frames uniformly over
it (the centres of ``n_frames`` equal segments), resized to ``size x size`` pixels. The same
reader serves the real HAD / Urgen stimuli and the simulated clips. A truncated clip (decord
indexes fewer frames than the mp4/mov container declares, see :func:`declared_video_length`)
or one shorter than its events' duration raises :class:`BadClipError` instead of silently
sampling its first part.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["write_mp4", "write_mp4_batch", "read_frames", "uniform_frame_indices",
           "declared_video_length", "BadClipError"]

_REENCODE_HINT = (
    "re-encode it, e.g. `ffmpeg -i {name} -c:v libx264 -pix_fmt yuv420p fixed.mp4`, "
    "or re-create the embedded dataset (notebook 00 / simulate_dataset(cfg, overwrite=True))"
)


class BadClipError(ValueError):
    """A stimulus clip that cannot be used (undecodable, truncated, too short); the message
    names the file and the fix."""


def _boxes(buf: bytes, start: int, end: int):
    """``(type, payload_start, box_end)`` of the ISO-BMFF boxes in ``buf[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack(">I4s", buf[pos:pos + 8])
        hdr = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, hdr = struct.unpack(">Q", buf[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < hdr:
            return
        yield typ.decode("latin-1"), pos + hdr, min(pos + size, end)
        pos += size


def _child(buf: bytes, start: int, end: int, name: str):
    for typ, a, b in _boxes(buf, start, end):
        if typ == name:
            return a, b
    return None


def _read_moov(path: Path) -> bytes | None:
    """The ``moov`` box of an mp4/mov file (top-level boxes are skipped by seeking)."""
    size_total = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide",
                                              b"skip", b"pnot"):
            return None
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            h = f.read(16)
            if len(h) < 8:
                return None
            size, typ = struct.unpack(">I4s", h[:8])
            hdr = 8
            if size == 1:
                if len(h) < 16:
                    return None
                size, hdr = struct.unpack(">Q", h[8:16])[0], 16
            elif size == 0:
                size = size_total - pos
            if size < hdr:
                return None
            if typ == b"moov":
                if pos + size > size_total or size > 256 * 2 ** 20:
                    return None
                f.seek(pos)
                return f.read(size)
            pos += size
    return None


def declared_video_length(path: str | Path) -> tuple[int, float] | None:
    """Frame count and duration (s) of the first video track, as the container declares them.

    Reads the ``moov`` header of mp4/mov/m4v files (``stsz`` sample count, ``mdhd``
    duration); no decoding. Returns None for other containers, fragmented mp4 or an
    unreadable header (the decoder then decides).
    """
    try:
        moov = _read_moov(Path(path))
        if moov is None:
            return None
        root = _child(moov, 0, len(moov), "moov")
        if root is None:
            return None
        for typ, a, b in _boxes(moov, *root):
            if typ != "trak":
                continue
            mdia = _child(moov, a, b, "mdia")
            if mdia is None:
                continue
            hdlr = _child(moov, *mdia, "hdlr")
            if hdlr is None or moov[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
                continue
            mdhd = _child(moov, *mdia, "mdhd")
            seconds = float("nan")
            if mdhd is not None:
                v = moov[mdhd[0]]
                if v == 1:
                    ts, dur = struct.unpack(">IQ", moov[mdhd[0] + 20:mdhd[0] + 32])
                else:
                    ts, dur = struct.unpack(">II", moov[mdhd[0] + 12:mdhd[0] + 20])
                seconds = dur / ts if ts else float("nan")
            minf = _child(moov, *mdia, "minf")
            stbl = _child(moov, *minf, "stbl") if minf else None
            stsz = (_child(moov, *stbl, "stsz") or _child(moov, *stbl, "stz2")) if stbl else None
            if stsz is None:
                return None
            count = struct.unpack(">I", moov[stsz[0] + 8:stsz[0] + 12])[0]
            return (int(count), float(seconds)) if count > 0 else None
    except (struct.error, IndexError, OSError):
        return None
    return None


def write_mp4(frames: np.ndarray, path: str | Path, fps: int, crf: int = 12,
              preset: str = "ultrafast") -> Path:
    """Encode frames as an H.264 mp4 (libx264, yuv420p) and return its path.

    Parameters
    ----------
    frames : uint8 array of shape (T, H, W, 3)
        RGB frames. ``H`` and ``W`` must be even (yuv420p halves the chroma planes).
    path : str or Path
        Output file; parent folders are created.
    fps : int
        Frames per second written in the container.
    crf : int, default 12
        x264 constant rate factor (0 lossless ... 51 worst). 12 decodes back within a few
        grey levels of the source on the simulated clips.
    preset : str, default "ultrafast"
        x264 speed preset; quality is set by ``crf``, the preset trades file size for speed
        (ffmpeg start-up dominates: about 25 ms a clip; see write_mp4_batch for bulk writing).

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    ValueError
        Wrong dtype/shape, odd frame size, no frames, or ``fps < 1``.
    RuntimeError
        ffmpeg failed (its message is included).
    """
    import imageio_ffmpeg

    path = Path(path)
    frames = np.asarray(frames)
    _, h, w = _check_frames(frames, f"write_mp4({path})")
    if int(fps) < 1:
        raise ValueError(f"write_mp4({path}): fps must be >= 1, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(int(fps)),
           "-i", "-", "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)),
           "-threads", "1", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"write_mp4({path}): ffmpeg failed (exit {proc.returncode}): {msg}")
    return path


def _check_frames(frames: np.ndarray, where: str) -> tuple[int, int, int]:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"{where}: frames must be a uint8 numpy array, got "
                         f"{getattr(frames, 'dtype', type(frames))}; "
                         "convert with np.clip(x * 255, 0, 255).astype(np.uint8)")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{where}: frames must have shape (T, H, W, 3), got {frames.shape}")
    t, h, w, _ = frames.shape
    if t < 1:
        raise ValueError(f"{where}: no frames to write")
    if h % 2 or w % 2:
        raise ValueError(f"{where}: frame size {h}x{w} must be even for yuv420p; "
                         "use an even sim.frame_size")
    return t, h, w


def write_mp4_batch(clips: Iterable[np.ndarray], paths: Sequence[str | Path], fps: int,
                    crf: int = 12, preset: str = "ultrafast") -> list[Path]:
    """Encode many clips of one shape with a single ffmpeg process (fast path of write_mp4).

    The clips are streamed (a generator that renders them lazily keeps memory flat), encoded
    as one H.264 stream with a key frame forced at every clip start, split by ffmpeg's
    segment muxer into one mp4 per clip inside a temporary folder, then moved to ``paths``.
    Each file decodes exactly like the output of :func:`write_mp4`.

    Parameters
    ----------
    clips : iterable of uint8 arrays of shape (T, H, W, 3)
        Exactly ``len(paths)`` clips, all of the same shape (even H and W).
    paths : sequence of str or Path
        Output files (parent folders are created; existing files are replaced).
    fps, crf, preset
        As in :func:`write_mp4`.

    Returns
    -------
    list of Path

    Raises
    ------
    ValueError
        Bad frames, clips of different shapes, or a count different from ``len(paths)``.
    RuntimeError
        ffmpeg failed.
    """
    import imageio_ffmpeg

    paths = [Path(p) for p in paths]
    n = len(paths)
    if n == 0:
        return []
    if int(fps) < 1:
        raise ValueError(f"write_mp4_batch: fps must be >= 1, got {fps}")
    it = iter(clips)
    first = next(it, None)
    if first is None:
        raise ValueError(f"write_mp4_batch: got no clips for {n} paths")
    t, h, w = _check_frames(first, f"write_mp4_batch({paths[0]})")
    if n == 1:
        if next(it, None) is not None:
            raise ValueError("write_mp4_batch: more clips than paths (1)")
        return [write_mp4(first, paths[0], fps, crf=crf, preset=preset)]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mp4batch_", dir=os.path.commonpath(
        [str(p.parent.resolve()) for p in paths])))
    try:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(int(fps)),
               "-i", "-", "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)),
               "-threads", "1", "-pix_fmt", "yuv420p",
               "-force_key_frames", f"expr:eq(mod(n,{t}),0)",
               "-f", "segment", "-segment_frames", ",".join(str(t * k) for k in range(1, n)),
               "-reset_timestamps", "1", "-segment_format", "mp4", str(tmp / "%07d.mp4")]
        with open(tmp / "ffmpeg.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=log)
            count = 0
            try:
                clip = first
                while clip is not None:
                    if count >= n:
                        raise ValueError(f"write_mp4_batch: more clips than paths ({n})")
                    shape = _check_frames(clip, f"write_mp4_batch({paths[count]})")
                    if shape != (t, h, w):
                        raise ValueError(f"write_mp4_batch({paths[count]}): clip shape "
                                         f"{clip.shape} differs from the first clip's "
                                         f"{first.shape}; write it with write_mp4")
                    proc.stdin.write(np.ascontiguousarray(clip).tobytes())
                    count += 1
                    clip = next(it, None)
                if count != n:
                    raise ValueError(f"write_mp4_batch: got {count} clips for {n} paths")
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            proc.stdin.close()
            rc = proc.wait()
        if rc != 0:
            msg = (tmp / "ffmpeg.log").read_bytes().decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"write_mp4_batch({paths[0].parent}): ffmpeg failed (exit {rc}): {msg}")
        segs = sorted(tmp.glob("*.mp4"))
        if len(segs) != n:
            raise RuntimeError(f"write_mp4_batch: ffmpeg wrote {len(segs)} segments for {n} "
                               "clips; write the clips one by one with write_mp4")
        for seg, p in zip(segs, paths):
            os.replace(seg, p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def uniform_frame_indices(n_total: int, n_frames: int) -> np.ndarray:
    """Indices of the frames at the centres of ``n_frames`` equal segments of a clip.

    Parameters
    ----------
    n_total : int
        Number of frames in the clip (>= 1).
    n_frames : int
        Number of frames to sample (>= 1); may exceed ``n_total`` (frames repeat).

    Returns
    -------
    int64 array of shape (n_frames,)
        Non-decreasing indices in ``[0, n_total)``.
    """
    if n_total < 1 or n_frames < 1:
        raise ValueError(f"uniform_frame_indices: need n_total >= 1 and n_frames >= 1, "
                         f"got {n_total}, {n_frames}")
    idx = np.floor((np.arange(n_frames) + 0.5) * n_total / n_frames).astype(np.int64)
    return np.clip(idx, 0, n_total - 1)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 frames (n, h, w, 3) to (n, size, size, 3)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _check_length(path: Path, n_total: int, fps: float, declared, min_duration) -> None:
    """Raise BadClipError when decord indexes fewer frames than declared, or the decodable
    part is shorter than ``min_duration``."""
    if declared is not None:
        n_decl, s_decl = declared
        if n_total < n_decl - max(2, 0.02 * n_decl):
            raise BadClipError(
                f"stim file {path}: only {n_total} of the {n_decl} frames its container declares"
                + (f" ({s_decl:.2f} s)" if np.isfinite(s_decl) else "")
                + f" can be decoded: the file is truncated or damaged (the sampled frames would "
                  f"all come from its first {100 * n_total / n_decl:.0f} %). Re-download or "
                  f"restore it (re-encoding, `ffmpeg -i {path.name} -c:v libx264 -pix_fmt "
                  f"yuv420p fixed.mp4`, keeps only the decodable part)")
    if min_duration and fps > 0:
        have = n_total / fps
        if have < float(min_duration) - max(2.0 / fps, 0.1 * float(min_duration)):
            raise BadClipError(
                f"stim file {path}: its {n_total} decodable frames at {fps:g} fps last {have:.2f} s "
                f"but its events say it is shown for {float(min_duration):g} s: the clip is "
                f"truncated or not the right file. Re-download it or fix the stim_file / "
                f"duration columns of the events")


def read_frames(path: str | Path, n_frames: int, size: int,
                min_duration: float | None = None) -> np.ndarray:
    """Decode a clip and return ``n_frames`` frames sampled uniformly, resized to a square.

    Parameters
    ----------
    path : str or Path
        Video file (mp4, avi, ... anything ffmpeg/decord decodes).
    n_frames : int
        Number of frames, taken at the centres of ``n_frames`` equal segments of the clip.
    size : int
        Output height and width in pixels; decord's scaler resizes (aspect is not kept).
        Where decord 0.6 fails at that size (a bug at e.g. 16, 24, 48, 72 px) the frames are
        decoded at the native size and resized with torch (bilinear, antialiased).
    min_duration : float, optional
        Seconds the clip must last (its events' duration): a clip whose decodable frames
        last less (tolerance: 2 frames or 10 %) is rejected.

    Returns
    -------
    uint8 array of shape (n_frames, size, size, 3)
        RGB frames in temporal order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        ``n_frames < 1`` or ``size < 1``.
    BadClipError (a ValueError)
        The file cannot be decoded or holds no frames; it is truncated (decord indexes fewer
        frames than the container declares, tolerance 2 frames or 2 %); it is shorter than
        ``min_duration``.
    """
    path = Path(path)
    if int(n_frames) < 1:
        raise ValueError(f"read_frames({path}): n_frames must be >= 1, got {n_frames}; "
                         "check data.n_frames / video.n_frames in the profile")
    if int(size) < 1:
        raise ValueError(f"read_frames({path}): size must be >= 1, got {size}; "
                         "check data.frame_size in the profile")
    if not path.is_file():
        raise FileNotFoundError(f"stim file {path} not found: check data.root / stim_file "
                                "column of events.tsv (paths are relative to <root>/stimuli)")
    if path.stat().st_size == 0:
        raise BadClipError(f"stim file {path} is empty (0 bytes) and holds no frames: "
                         + _REENCODE_HINT.format(name=path.name))
    import decord

    size, n_frames = int(size), int(n_frames)
    declared = declared_video_length(path)
    # decord 0.6 fails on some output sizes (e.g. 8, 12, 16, 24, 48, 72 px: "Check failed:
    # from_size"); then decode at another size and resize with torch (bilinear, antialiased).
    attempts = [(size, size), (-1, -1), (2 * size + 2, 2 * size + 2)]
    out, last_err = None, None
    for k, (w, h) in enumerate(attempts):
        try:
            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=w, height=h,
                                    num_threads=1)
        except Exception as err:  # decord raises DECORDError / RuntimeError on bad streams
            if k == 0:
                what = (f"; its header declares {declared[0]} frames, so the file is probably "
                        f"truncated (re-download it)" if declared else "")
                raise BadClipError(f"stim file {path} cannot be decoded ({type(err).__name__})"
                                   f"{what}: " + _REENCODE_HINT.format(name=path.name)) from None
            last_err = err
            continue
        n_total = len(vr)
        if n_total < 1:
            raise BadClipError(f"stim file {path} holds zero video frames: "
                               + _REENCODE_HINT.format(name=path.name))
        if k == 0:
            _check_length(path, n_total, float(vr.get_avg_fps() or 0.0), declared, min_duration)
        idx = uniform_frame_indices(n_total, n_frames)
        try:
            out = vr.get_batch(idx.tolist()).asnumpy()
            break
        except Exception as err:
            last_err = err
        finally:
            del vr
    if out is None:
        raise BadClipError(f"stim file {path}: decoding {n_frames} frames failed "
                         f"({type(last_err).__name__}: {str(last_err).splitlines()[0][:120]}): "
                         + _REENCODE_HINT.format(name=path.name))
    if out.shape[1:3] != (size, size):
        out = _resize(out, size)
    out = np.ascontiguousarray(out, dtype=np.uint8)
    if out.shape != (int(n_frames), int(size), int(size), 3):
        raise BadClipError(f"stim file {path}: decoded shape {out.shape}, expected "
                         f"({n_frames}, {size}, {size}, 3): " + _REENCODE_HINT.format(name=path.name))
    return out
