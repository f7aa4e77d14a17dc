"""make gallery: executed notebooks -> static HTML with an index; the pages open in Chromium;
make's per-notebook dependencies (llm4brain/nbdeps.py)."""
from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pytest

from llm4brain import nbdeps
from llm4brain.gallery import build_gallery, check_in_browser, executed_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
IMG = re.compile(r'<img[^>]*src="data:image/png;base64,')


def _png() -> str:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [1, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _executed(path: Path, title: str, n_figs: int, seconds: float) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\nSome words."))
    for k in range(n_figs):
        c = nbformat.v4.new_code_cell(f"plot({k})", execution_count=k + 1)
        c.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png(),
                                                                   "text/plain": "<Figure>"})]
        nb.cells.append(c)
    nb.metadata["papermill"] = dict(duration=seconds, start_time="2026-12-07T06:00:00.000000")
    nbformat.write(nb, path)


@pytest.fixture
def run(tmp_path):
    nbd = tmp_path / "notebooks"
    nbd.mkdir()
    _executed(nbd / "00_simulate_dataset.ipynb", "00 · Simulating", 2, 31.0)
    _executed(nbd / "01_data_loading.ipynb", "01 · Loading", 0, 12.0)
    for junk in ("02_tokenizer_design.src.ipynb", "02_tokenizer_design.failed.ipynb"):
        (nbd / junk).write_text("{}")
    return SimpleNamespace(run_dir=tmp_path, profile="unit")


def test_gallery_pages_and_index(run):
    index = build_gallery(run, progress=False)
    assert index == run.run_dir / "gallery" / "index.html"
    html = index.read_text()
    # in order, titles, times, thumbnails only where a notebook drew something
    assert html.index("00_simulate_dataset.html") < html.index("01_data_loading.html")
    assert "00 · Simulating" in html and "0.5 min" in html and "2 figure(s)" in html
    assert len(IMG.findall(html)) == 1 and "(no figure)" in html
    assert "02_tokenizer_design" not in html          # .src / .failed files are not pages
    page = (run.run_dir / "gallery" / "00_simulate_dataset.html").read_text()
    assert len(IMG.findall(page)) == 2 and "Some words." in page


def test_gallery_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        executed_notebooks(tmp_path / "nope")
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(FileNotFoundError, match="no executed notebook"):
        build_gallery(SimpleNamespace(run_dir=tmp_path, profile="x"), progress=False)
    (tmp_path / "notebooks" / "03_stage1_alignment.ipynb").write_text("not json")
    with pytest.raises(ValueError, match="03_stage1_alignment.ipynb is not a readable notebook"):
        build_gallery(SimpleNamespace(run_dir=tmp_path, profile="x"), progress=False)


@pytest.mark.slow
def test_gallery_figures_load_in_chromium(run):
    """A real headless Chromium (make browser installs it) opens the index and a notebook page
    and decodes every figure on them."""
    index = build_gallery(run, progress=False)
    report = check_in_browser(index, pages=2)
    assert set(report) == {"index.html", "00_simulate_dataset.html", "01_data_loading.html"}
    assert report["index.html"]["images"] == 1 and report["index.html"]["loaded"] == 1
    assert len(report["index.html"]["links"]) == 2
    assert report["00_simulate_dataset.html"]["images"] == 2
    assert report["00_simulate_dataset.html"]["loaded"] == 2
    # a broken figure is seen as broken
    page = run.run_dir / "gallery" / "01_data_loading.html"
    page.write_text(page.read_text().replace("</body>", '<img src="data:image/png;base64,AAAA"></body>'))
    assert check_in_browser(index, pages=2)["01_data_loading.html"] == dict(images=1, loaded=0, links=[])


# --- make's dependencies per notebook -------------------------------------------------------

def test_nbdeps_follow_imports_and_keep_plots_local():
    deps = nbdeps.notebook_deps(ROOT, NOTEBOOKS)
    files = {nb.stem: set(f) for nb, (f, _) in deps.items()}
    earlier = {nb.stem: e for nb, (_, e) in deps.items()}
    assert earlier["00_simulate_dataset"] == [] and earlier["03_stage1_alignment"][-1] == "02_tokenizer_design"
    # the simulator's notebook does not depend on the dialogue or Stage II code ...
    assert not any(f.startswith("llm4brain/dialogue/") for f in files["00_simulate_dataset"])
    assert "llm4brain/training/stage2.py" not in files["02_tokenizer_design"]
    # ... notebook 05 does, through a function-local import in evaluation/stage2_outputs.py
    assert "llm4brain/training/stage2.py" in files["05_stage2_domain_adaptation"]
    # inputs: Stage I's training code reaches every later notebook, a plot helper does not
    assert all("llm4brain/training/stage1.py" in files[n] for n in list(files)[3:])
    assert "llm4brain/reconstruction/plots.py" in files["08_visual_reconstruction"]
    assert not any("llm4brain/reconstruction/plots.py" in files[n] for n in list(files)[:8])


def test_make_only_reruns_what_a_change_reaches(tmp_path):
    """make -n with every notebook 'executed': a plot helper of notebook 08 re-runs 08 only;
    Stage I training code re-runs 03 and after; nothing changed, nothing runs."""
    nbd = tmp_path / "notebooks"
    nbd.mkdir()
    for nb in NOTEBOOKS:
        (nbd / f"{nb.stem}.ipynb").write_text("{}")

    def planned(*extra):
        r = subprocess.run(["make", "-n", "--no-print-directory", "PROFILE=smoke",
                            f"RUN_DIR={tmp_path}", "notebooks-run", *extra], cwd=ROOT,
                           capture_output=True, text=True, check=True)
        return [n.stem for n in NOTEBOOKS if f"[smoke] {n.name}" in r.stdout]

    assert planned() == []
    assert planned("-W", "llm4brain/reconstruction/plots.py") == ["08_visual_reconstruction"]
    assert planned("-W", "llm4brain/training/stage1.py") == [n.stem for n in NOTEBOOKS[3:]]
    assert planned("-W", "notebooks/" + NOTEBOOKS[1].name) == [NOTEBOOKS[1].stem]
