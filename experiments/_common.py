"""What the experiments share: where their results go, and the check that the run they read
exists (imported as ``from _common import ...``: ``python experiments/<name>.py`` puts this
folder first on ``sys.path``).

An experiment reads a finished run of a profile (``runs/<profile>/`` under
``$LLM4BRAIN_HOME``, else the checkout). :func:`require_run` stops it at once, with the ``make``
target that makes the run, when the notebook it needs has not run there yet, with exit status
:data:`MISSING_RUN` so that ``make experiments`` can skip it and go on.
"""
from __future__ import annotations

import sys
from pathlib import Path

from llm4brain.config import load_config, repo_root

#: experiments/results/: every experiment writes here.
RESULTS = Path(__file__).resolve().parent / "results"
#: Exit status of an experiment whose run is missing (``make experiments`` skips it).
MISSING_RUN = 3


def require_run(profile: str = "default", notebook: str = "05", *, script: str | None = None):
    """The profile's config, or exit :data:`MISSING_RUN` naming the ``make`` target to run.

    The run is there when ``runs/<profile>/notebooks/<notebook>_<name>.ipynb`` is: make (and
    ``python -m llm4brain.runnb``) writes it once the notebook has finished, and every earlier
    notebook has run before it.

    Parameters
    ----------
    profile : the profile whose run is read (``default`` unless the experiment takes another)
    notebook : the two digits of the last notebook whose outputs it reads (``00``-``08``)
    script : the name shown in the message (default: the running script's)
    """
    cfg = load_config(profile)
    folder = cfg.run_dir / "notebooks"
    done = [p for p in folder.glob(f"{notebook}_*.ipynb") if "." not in p.stem]
    if done:
        return cfg
    src = sorted((repo_root() / "notebooks").glob(f"{notebook}_*.py"))
    name = src[0].stem if src else f"{notebook}_*"
    on = "" if profile == "default" else f" PROFILE={profile}"
    script = script or Path(sys.argv[0]).name
    print(f"{script}: needs the {profile} run through notebook {name} ({folder / name}.ipynb "
          f"is missing): run `make reproduce{on}` first (or `make nb NB={notebook}{on}` for "
          f"that notebook and the ones before it)", file=sys.stderr)
    raise SystemExit(MISSING_RUN)
