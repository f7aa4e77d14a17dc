"""Which volumes a trial block should hold: a 12-class probe on the pseudo-target.

For each candidate block (``data.lag_s`` x ``data.block_trs``) of the default profile, the
mean of the block's volumes at the 300 voxels with the largest class F on the training
subjects sub-01..03 is standardised and read by a logistic regression (C 0.05) fitted on their
trials; the score is its top-1 on every trial of sub-04, a training subject held out as
pseudo-target (the real targets sub-05/06 are not read). Needs the default run's dataset
(notebook 00: ``make reproduce``, or ``make nb NB=00``). Writes
``experiments/results/block_choice.csv``.

    python experiments/block_choice.py
"""
from __future__ import annotations


import numpy as np
import pandas as pd
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from llm4brain.config import load_config
from llm4brain.data import build_trial_cache
from llm4brain.sim import block_times

from _common import RESULTS, require_run

TRAIN, PSEUDO = ["01", "02", "03"], "04"
CANDIDATES = [(4.0, 3), (4.0, 2), (2.0, 3), (3.0, 2), (2.0, 1), (4.0, 1), (6.0, 1), (8.0, 1)]


def probe(tc) -> float:
    t = tc.trials
    sub, y = t["subject"].astype(str).to_numpy(), t["class_id"].to_numpy()
    tr, te = np.isin(sub, TRAIN), sub == PSEUDO
    B = np.stack([np.asarray(tc.blocks[i])[:, tc.mask].mean(0) for i in range(len(t))])
    F, _ = f_classif(B[tr], y[tr])
    sel = np.argsort(-np.nan_to_num(F))[:300]
    sc = StandardScaler().fit(B[tr][:, sel])
    clf = LogisticRegression(C=0.05, max_iter=2000).fit(sc.transform(B[tr][:, sel]), y[tr])
    return float(clf.score(sc.transform(B[te][:, sel]), y[te]))


def main():
    require_run("default", "00")
    rows = []
    for lag, T in CANDIDATES:
        cfg = load_config("default", {"data": {"lag_s": lag, "block_trs": T}})
        if not (cfg.data_root / "derivatives" / "simulation").is_dir():
            raise SystemExit(f"no default dataset at {cfg.data_root}: run make reproduce (or "
                             f"notebook 00) first")
        tc = build_trial_cache(cfg, progress=False, keep_volumes=False)
        rows.append(dict(lag_s=lag, block_trs=T,
                         volumes_after_onset_s="/".join(f"+{x:g}" for x in block_times(cfg, tc)),
                         probe_top1_pseudo_target=round(probe(tc), 4),
                         chance=round(1 / tc.trials["class_id"].nunique(), 4)))
        print(rows[-1], flush=True)
    out = RESULTS / "block_choice.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
