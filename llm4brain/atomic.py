"""Files that are either complete or absent: write under a temporary name, then move into place.

A run killed mid-write (SIGKILL, power cut, full disk) leaves at most a hidden
``.<name>.<pid>.part`` file beside the target, never a truncated file under the real name that
a later run would read as a finished result. ``os.replace`` is atomic on POSIX within one file
system, and the temporary file is in the target's own directory.

>>> with atomic_path("runs/default/results/summary.json") as tmp:   # doctest: +SKIP
...     tmp.write_text(json.dumps(summary))
>>> write_json("runs/default/results/summary.json", summary)          # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["atomic_path", "write_text", "write_json", "write_csv", "save_npz", "save_npy"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` when the block succeeds.

    On any error the temporary file is deleted and the target left as it was; a full disk
    (``ENOSPC``) is re-raised naming the file and what to do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path} "
                          f"({free / 1e9:.2f} GB free now); nothing was written under that "
                          f"name. Free space there or move the run directory (LLM4BRAIN_HOME, "
                          f"or run.dir in the profile) to a larger disk") from exc
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``Path.write_text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj, **kwargs) -> Path:
    """``json.dumps(obj, **kwargs)`` to ``path``, atomically."""
    return write_text(path, json.dumps(obj, **kwargs))


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """``df.to_csv(path, **kwargs)``, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """``numpy.savez(path, **arrays)``, atomically (``path`` should end in ``.npz``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def save_npy(path: str | os.PathLike, array) -> Path:
    """``numpy.save(path, array)``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)
