"""Tables 1-2 in the paper's format, the summary table and the examples."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sacrebleu.metrics import BLEU

from llm4brain.config import EvalConfig
from llm4brain.evaluation.controls import summary_table
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.evaluation.tables import (examples_markdown, format_summary, read_table,
                                         select_examples, subject_table, to_latex, write_examples,
                                         write_summary_table, write_table)

LABELS = ["BERTScore", "SacreBLEU-1", "SacreBLEU-2", "ROUGE-L F", "ROUGE-L P", "ROUGE-L R",
          "SacreBLEU-4", "CIDEr-D"]
WORDS = "a man woman dog plays runs squash court hair cut salon park ball in the with".split()


@pytest.fixture
def scored(rng):
    refs = [" ".join(rng.choice(WORDS, size=8)) for _ in range(15)]
    cands = [" ".join(r.split()[: int(rng.integers(1, 8))] + ["video"]) for r in refs]
    meta = pd.DataFrame({"subject": ["27"] * 5 + ["28"] * 6 + ["29"] * 4,
                         "class_name": ["squash"] * 15})
    sc = TextScorer(EvalConfig(), bertscore=False)
    return cands, refs, sc.score(cands, refs, meta=meta)


def test_subject_table_format(scored):
    cands, refs, res = scored
    t = subject_table(res)
    assert list(t.index) == ["sub-27", "sub-28", "sub-29", "Total"]
    assert list(t.columns) == LABELS and t.index.name == "Subject"
    # a subject row is sacrebleu's corpus BLEU over that subject's trials
    want = BLEU(max_ngram_order=2).corpus_score(cands[5:11], [refs[5:11]]).score
    assert t.loc["sub-28", "SacreBLEU-2"] == pytest.approx(want)
    # paper's Total: mean of the subject rows
    rows = t.drop(index="Total")
    np.testing.assert_allclose(t.loc["Total", LABELS[1:]], rows[LABELS[1:]].mean())
    pooled = subject_table(res, total="pooled")
    all_bleu = BLEU(max_ngram_order=1).corpus_score(cands, [refs]).score
    assert pooled.loc["Total", "SacreBLEU-1"] == pytest.approx(all_bleu)


def test_subject_table_needs_subject_column(scored):
    *_, res = scored
    with pytest.raises(KeyError, match=r"meta=trials\[\['subject'\]\]"):
        subject_table(res.per_trial.drop(columns="subject"))


def test_write_table_round_trip(scored, tmp_path):
    *_, res = scored
    t = subject_table(res)
    paths = write_table(t, tmp_path, "table1_had", caption="HAD, target subjects")
    assert {p.suffix for p in paths.values()} == {".csv", ".md", ".tex"}
    back = read_table(paths["csv"])
    pd.testing.assert_frame_equal(back, t, check_exact=False, rtol=1e-12, check_dtype=False)
    # overwriting is allowed (tables are regenerated)
    write_table(t, tmp_path, "table1_had")


def test_markdown_has_total_row(scored, tmp_path):
    *_, res = scored
    t = subject_table(res)
    md = write_table(t, tmp_path, "t", formats=("md",))["md"].read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0].split("|")[1].strip() == "Subject"
    assert lines[-1].startswith("| Total |")
    assert len(lines) == 2 + 4
    assert all(ln.count("|") == len(LABELS) + 2 for ln in lines)
    # two decimals
    assert re.search(r"\| \d+\.\d{2} \|", lines[-1])


def _check_latex(tex: str, n_cols: int):
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert tex.count("\\begin{") == tex.count("\\end{")
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):  # braces balanced (ignoring escaped ones)
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    for row in body.strip().splitlines():
        if row.startswith("\\midrule"):
            continue
        assert len(re.findall(r"(?<!\\)&", row)) == n_cols - 1, row
        assert row.endswith("\\\\")


def test_latex_booktabs_paper_header(scored):
    *_, res = scored
    tex = to_latex(subject_table(res), caption="Results 100% & more_stuff")
    _check_latex(tex, 9)
    assert "BLEU-4 (\\%) & CIDEr-D (x100)" in tex
    assert "\\multicolumn{2}{c}{SacreBLEU (\\%)}" in tex
    assert "\\multicolumn{3}{c}{ROUGE-L (\\%)}" in tex
    assert "\\cmidrule(lr){3-4}" in tex and "\\cmidrule(lr){5-7}" in tex
    assert "100\\% \\& more\\_stuff" in tex
    assert "sub-27 &" in tex and "Total &" in tex


def test_summary_writer(scored, tmp_path):
    cands, refs, res = scored
    tidy = summary_table(res, baseline=res, n_boot=30, rng=0, metrics=("sacrebleu1", "rougeL_f"))
    wide = format_summary(tidy)
    assert list(wide.index) == ["SacreBLEU-1", "ROUGE-L F"]
    assert list(wide.columns) == ["baseline (ridge + NN)", "llm4brain"]
    assert re.fullmatch(r"\d+\.\d{2} \[\d+\.\d{2}, \d+\.\d{2}\]", wide.iloc[0, 1])
    paths = write_summary_table(tidy, tmp_path)
    assert pd.read_csv(paths["csv"]).shape == tidy.shape
    assert "llm4brain" in paths["md"].read_text()
    _check_latex(paths["tex"].read_text(), 3)


def test_select_examples(scored, tmp_path):
    *_, res = scored
    ex = select_examples(res, 3, metric="ROUGE-L F")
    assert (ex.groupby("subject").size() == 3).all()
    for g, sub in ex.groupby("subject"):
        pt = res.per_trial[res.per_trial.subject == g]
        assert sub.iloc[0]["rank"] == "best" and sub.iloc[-1]["rank"] == "worst"
        assert sub.iloc[0]["rougeL_f"] == pytest.approx(pt["rougeL_f"].max())
        assert sub.iloc[-1]["rougeL_f"] == pytest.approx(pt["rougeL_f"].min())
    md = examples_markdown(ex, metric="rougeL_f")
    assert "### sub-28" in md and "**Video2Text:**" in md and "**fMRI2Text:**" in md
    assert "class_name squash" in md
    paths = write_examples(ex, tmp_path, metric="rougeL_f")
    assert paths["md"].is_file() and len(pd.read_csv(paths["csv"])) == 9
