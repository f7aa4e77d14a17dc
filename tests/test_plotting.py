"""Shared plot helpers: files written, Figures returned, expected artists drawn."""
from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from llm4brain.config import load_config
from llm4brain.plotting import (pca_2d, plot_embedding_2d, plot_loss_curves,
                                plot_metric_distributions, plot_similarity_matrix,
                                plot_subject_bars, save_figure)

LABELS = ["BERTScore", "SacreBLEU-1", "SacreBLEU-2", "ROUGE-L F", "ROUGE-L P", "ROUGE-L R"]


@pytest.fixture
def table(rng):
    t = pd.DataFrame(rng.uniform(20, 60, size=(4, 6)), columns=LABELS,
                     index=pd.Index(["sub-27", "sub-28", "sub-29", "Total"], name="Subject"))
    return t


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() < 1.0]


def test_save_figure_to_dir_and_cfg(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = save_figure(fig, "06_test.png", tmp_path)
    assert [p.name for p in paths] == ["06_test.png", "06_test.pdf"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:4] == b"%PDF"
    cfg = load_config("smoke")
    cfg = cfg.replace(run=dataclasses.replace(cfg.run, figures_dir=str(tmp_path / "figs")))
    p2 = save_figure(fig, "sub/x", cfg, formats=("png",))
    assert p2 == [tmp_path / "figs" / "sub" / "x.png"] and p2[0].is_file()


def test_save_figure_errors(tmp_path):
    fig = plt.figure()
    with pytest.raises(ValueError, match="relative file stem"):
        save_figure(fig, "../x", tmp_path)
    with pytest.raises(TypeError, match="matplotlib Figure"):
        save_figure(plt.gca(), "x", tmp_path)
    with pytest.raises(ValueError, match="cfg.figures_dir"):
        save_figure(fig, "x", None)


def test_subject_bars_scalar_band_and_ceiling(table):
    fig = plot_subject_bars(table, "bertscore", chance=(10.0, 15.0), ceiling=80.0,
                            ci=pd.DataFrame({"low": table["BERTScore"] - 2,
                                             "high": table["BERTScore"] + 2}))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = _bars(ax)
    assert len(bars) == 4
    np.testing.assert_allclose([b.get_height() for b in bars], table["BERTScore"])
    assert any(np.allclose(line.get_ydata(), 80.0) for line in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table.index)


def test_subject_bars_per_subject_chance(table):
    chance = pd.DataFrame({"estimate": [5.0, 6.0, 7.0], "low": [4, 5, 6], "high": [6, 7, 8]},
                          index=["27", "28", "29"])
    fig, ax = plt.subplots()
    out = plot_subject_bars(table, "SacreBLEU-1", chance=chance,
                            ceiling={"27": 70, "28": 71, "29": 72, "Total": 71}, ax=ax)
    assert out is fig
    assert len(_bars(ax)) == 4
    assert len(ax.collections) >= 3 + 1  # 3 chance bands + ceiling/estimate line collections
    with pytest.raises(KeyError, match="no column for metric"):
        plot_subject_bars(table, "meteor")


def test_subject_bars_tidy_ci(table):
    tidy = pd.DataFrame({"group": list(table.index) * 2,
                         "metric": ["bertscore"] * 4 + ["sacrebleu1"] * 4,
                         "low": list(table["BERTScore"] - 1) + [0.0] * 4,
                         "high": list(table["BERTScore"] + 3) + [0.0] * 4})
    fig = plot_subject_bars(table, "BERTScore", ci=tidy)
    from matplotlib.container import ErrorbarContainer
    eb = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(eb) == 1
    seg = eb[0].lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in seg], 4.0)


def test_metric_distributions(rng):
    per_trial = pd.DataFrame({"bertscore": rng.uniform(30, 70, 20)})
    data = {"chance": rng.uniform(10, 30, 20), "llm4brain": per_trial,
            "ceiling": pd.DataFrame({"BERTScore": rng.uniform(60, 90, 20)})}
    fig = plot_metric_distributions(data, "bertscore", chance=(15.0, 25.0))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(data)
    flat = {round(float(ln.get_ydata()[0]), 9) for ln in ax.get_lines()
            if len(ln.get_ydata()) == 2 and ln.get_ydata()[0] == ln.get_ydata()[1]}
    for v in (data["chance"], per_trial["bertscore"], data["ceiling"]["BERTScore"]):
        assert round(float(np.median(v)), 9) in flat               # each box's median line
    assert sum(isinstance(c, PathCollection) for c in ax.collections) == 3
    with pytest.raises(ValueError, match="at least one"):
        plot_metric_distributions({})


def test_loss_curves():
    log = pd.DataFrame({"step": np.arange(50), "loss": np.linspace(3, 1, 50),
                        "clip": np.linspace(2, 0.5, 50), "l2l1": np.linspace(1, 0.2, 50),
                        "lr": np.full(50, 1e-3)})
    fig = plot_loss_curves(log, logy=True)
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["loss", "clip", "l2l1"]
    assert ax.get_yscale() == "log"
    fig2 = plot_loss_curves(log, terms=["clip"], smooth=5)
    assert len(fig2.axes[0].get_lines()) == 2  # raw + smoothed
    with pytest.raises(KeyError, match="not in the log"):
        plot_loss_curves(log, terms=["nce"])
    with pytest.raises(KeyError, match="no 'step' column"):
        plot_loss_curves(log.drop(columns="step"))


def test_similarity_matrix(rng):
    S = rng.normal(size=(6, 6))
    fig = plot_similarity_matrix(S, labels=list("abcdef"))
    assert len(fig.axes) == 2  # heat map + colorbar
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(S.shape), S)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("abcdef")
    with pytest.raises(ValueError, match="2-D"):
        plot_similarity_matrix(np.zeros(3))


def test_embedding_2d(rng):
    X = rng.normal(size=(30, 8))
    X[:, 0] *= 10
    labels = np.repeat([0, 1, 2], 10)
    fig = plot_embedding_2d(X, labels, names={0: "squash", 1: "haircut", 2: "dance"})
    ax = fig.axes[0]
    (pts,) = ax.collections                                   # one scatter, coloured by class
    colours = [tuple(c) for c in pts.get_facecolors()]
    assert len(colours) == 30 and len(set(colours)) == 3
    assert colours[0] == colours[9] != colours[10]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["squash", "haircut", "dance"]
    # PCA against an independent reference (covariance eigenvectors)
    P = pca_2d(X)
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(np.cov(Xc.T))
    ref = Xc @ V[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(P), np.abs(ref), atol=1e-8)
    with pytest.raises(ValueError, match="labels"):
        plot_embedding_2d(X, labels[:5])


def test_candidate_bars_mean_sd_and_colours():
    import matplotlib.colors as mcolors

    from llm4brain.plotting import plot_candidate_bars

    t = pd.DataFrame([dict(label=lab, kind=k, metric=m, value=v)
                      for lab, k, vals in (("DA on", "model", (20, 22)),
                                           ("shuffled", "chance", (15, 15)),
                                           ("ridge", "baseline", (14, 14)))
                      for v in vals for m in ("agent", "bertscore")])
    fig = plot_candidate_bars(t, ["agent", "bertscore"], xlims={"bertscore": (10, 30)})
    ax = fig.axes[0]
    bars = ax.patches
    assert [round(b.get_width(), 6) for b in bars] == [21.0, 15.0, 14.0]
    assert [mcolors.to_hex(b.get_facecolor()) for b in bars] == [
        mcolors.to_hex(c) for c in ("tab:blue", "tab:grey", "tab:orange")]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["DA on", "shuffled", "ridge"]
    assert fig.axes[1].get_xlim() == (10, 30)


def test_importing_the_plot_modules_leaves_matplotlib_alone():
    import subprocess
    import sys
    code = ("import matplotlib as mpl; before = dict(mpl.rcParams); "
            "import llm4brain.plotting, llm4brain.plotting_data, llm4brain.reconstruction.plots, "
            "llm4brain.dialogue.plots; "
            "changed = [k for k in before if mpl.rcParams[k] != before[k]]; print(changed); "
            "assert not changed, changed")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_plot_functions_draw_in_the_house_style_and_restore_the_callers():
    import matplotlib as mpl
    import pandas as pd
    from llm4brain.plotting import HOUSE_STYLE, plot_loss_curves
    with mpl.rc_context({"axes.spines.top": True, "figure.dpi": 72}):
        fig = plot_loss_curves(pd.DataFrame(dict(step=[1, 2, 3], loss=[3.0, 2.0, 1.5])))
        assert mpl.rcParams["axes.spines.top"] is True and mpl.rcParams["figure.dpi"] == 72
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible()          # HOUSE_STYLE hides the top spine
    assert fig.dpi == HOUSE_STYLE["rc"]["figure.dpi"]
