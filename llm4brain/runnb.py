"""Run one notebook source headless into its run: what each ``make`` notebook rule calls.

``python -m llm4brain.runnb notebooks/05_stage2_domain_adaptation.py --profile classroom``

1. the jupytext source (``py:percent``) becomes ``<run_dir>/notebooks/<name>.src.ipynb`` on the
   ``llm4brain`` kernel;
2. papermill executes it from ``notebooks/`` with ``PROFILE`` (and ``--yaml`` parameters) into
   ``<name>.part.ipynb``;
3. on success, :func:`llm4brain.provenance.record` logs the figures it wrote and the part file
   becomes ``<name>.ipynb``; on failure it becomes ``<name>.failed.ipynb`` (the last good
   ``<name>.ipynb``, if any, is kept) and the exit status is 1.

One Python process does the three steps that used to be three programs (jupytext, papermill,
provenance), which saves their start-up, several seconds a notebook on 2 cores.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["run_notebook", "main"]

KERNEL = "llm4brain"


def run_notebook(source: Path, profile: str, run_dir: Path | None = None,
                 parameters: dict | None = None, cwd: Path | None = None) -> Path:
    """Execute ``source`` for ``profile``; return the executed notebook's path (see module doc).

    Raises
    ------
    RuntimeError
        When a cell fails; the message names the ``.failed.ipynb`` to open.
    """
    import jupytext
    import papermill

    from .config import load_config
    from .provenance import record

    source = Path(source).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"notebook source {source} does not exist")
    cfg = load_config(profile)
    run_dir = Path(run_dir) if run_dir else cfg.run_dir
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = source.stem
    src, part = out_dir / f"{name}.src.ipynb", out_dir / f"{name}.part.ipynb"
    final, failed, started = (out_dir / f"{name}.ipynb", out_dir / f"{name}.failed.ipynb",
                              out_dir / f"{name}.started")
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "llm4brain (.venv)",
                                 "language": "python"}
    jupytext.write(nb, src, fmt="ipynb")
    started.touch()
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        papermill.execute_notebook(str(src), str(part), parameters={"PROFILE": profile,
                                                                    **(parameters or {})},
                                   kernel_name=KERNEL, cwd=str(cwd or source.parent))
    except Exception as e:  # noqa: BLE001 - papermill raises its own and the kernel's errors
        if part.exists():
            os.replace(part, failed)
        src.unlink(missing_ok=True)
        raise RuntimeError(f"{source.name} failed: the executed notebook is {failed}\n"
                           f"{type(e).__name__}: {str(e)[-3000:]}") from None
    rows = record(started, cfg, name)
    print(f">> provenance: {len(rows)} file(s) of {name} recorded", flush=True)
    os.replace(part, final)
    src.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    return final


def main(argv=None) -> int:
    import yaml

    ap = argparse.ArgumentParser(prog="python -m llm4brain.runnb", description=__doc__.split("\n")[0])
    ap.add_argument("source", help="the notebook's jupytext source, notebooks/NN_name.py")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--run-dir", default=None, help="default: the profile's run.run_dir")
    ap.add_argument("-y", "--yaml", action="append", default=[],
                    help="more parameters, as a YAML mapping (papermill's -y; may repeat)")
    a = ap.parse_args(argv)
    params = {}
    for text in a.yaml:
        more = yaml.safe_load(text)
        if not isinstance(more, dict):
            ap.error(f"-y must be a YAML mapping of parameter names to values, got {text!r}")
        params.update(more)
    try:
        run_notebook(Path(a.source), a.profile, a.run_dir, params)
    except RuntimeError as e:
        print(f"!! {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
