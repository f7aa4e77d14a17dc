"""Generated conclusions of notebooks 05 and 08: every number read from their tables."""
import pandas as pd
import pytest


def test_da_reading_reads_the_interval_and_the_references():
    from llm4brain.evaluation.controls import Interval
    from llm4brain.evaluation.reading import da_reading

    t = pd.DataFrame([dict(condition=c, subject="all", bertscore=v) for c, v in
                      (("DA on", 58.3), ("DA off", 57.9), ("chance (mean)", 53.2),
                       ("ridge + NN baseline", 57.7), ("noise ceiling", 64.6))]
                     + [dict(condition="DA on", subject="sub-05", bertscore=99.0)])
    txt = da_reading(t, Interval(0.4, -0.2, 1.0))
    assert "58.30" in txt and "57.90" in txt and "includes 0" in txt
    assert "chance (the same decoder on shuffled fMRI) 53.20" in txt and "noise ceiling 64.60" in txt
    assert "above its chance level and ahead of the baseline" in txt and "99.00" not in txt
    assert "DA helps" in da_reading(t, Interval(0.4, 0.1, 0.7))
    with pytest.raises(KeyError, match="DA off"):
        da_reading(t[t.condition != "DA off"], Interval(0, 0, 0))


def test_recon_reading_names_the_metrics_above_chance():
    from llm4brain.evaluation.reading import recon_reading

    row = {"PixCorr | fMRI": 0.20, "PixCorr | chance": 0.10, "PixCorr | ceiling": 0.5,
           "SSIM | fMRI": 0.30, "SSIM | chance": 0.35,
           "Early id (%) | fMRI": 70.0, "Early id (%) | chance": 50.0,
           "Late id (%) | fMRI": 65.0, "Late id (%) | chance": 50.0, "Late id (%) | ridge baseline": 60.0}
    t = pd.DataFrame([row, row], index=["sub-05", "Total"])
    txt = recon_reading(t)
    assert "above chance on PixCorr, Early id (%), Late id (%)" in txt
    assert "PixCorr 0.200 (chance 0.100, ceiling 0.500)" in txt and "ridge 60.0 %" in txt
    row["SSIM | fMRI"] = 0.5
    assert "above chance on every metric" in recon_reading(pd.DataFrame([row], index=["Total"]))
    with pytest.raises(KeyError, match="Total"):
        recon_reading(t.drop(index="Total"))


def test_attribute_reading_splits_above_and_at_chance():
    from llm4brain.evaluation.reading import attribute_reading

    rows = [dict(condition="video-LLM answer", attribute=a, accuracy=acc, ci_low=lo, pairing_chance=ch,
                 distinct=27.3) for a, acc, lo, ch in (("agent", 58.5, 56.2, 18.0), ("colour", 10.9, 9.2, 9.5))]
    rows.append(dict(condition="answer for a random other clip", attribute="agent", accuracy=18.0,
                     ci_low=16.0, pairing_chance=18.0, distinct=27.3))
    txt = attribute_reading(pd.DataFrame(rows))
    assert "agent 58.5 % (chance 18.0)" in txt and "Above chance (95 % interval over clips): agent;" in txt
    assert "at chance: colour." in txt and "27.3 % of the answers are distinct" in txt
    with pytest.raises(KeyError, match="no rows"):
        attribute_reading(pd.DataFrame(rows), condition="fMRI2Text")


def test_qa_reading_counts_only_questions_above_the_shuffled_band():
    from llm4brain.dialogue import qa_reading

    t = pd.DataFrame([dict(question="agent", k=3, fmri=37.5, chance=33.3, shuffled_high=37.5, video=52.1),
                      dict(question="speed", k=2, fmri=58.3, chance=50.0, shuffled_high=50.0, video=31.2)])
    txt = qa_reading(t)
    assert "agent 37.5 % (1/3 = 33.3, shuffled up to 37.5, from the clip 52.1)" in txt
    assert txt.endswith("Above every shuffled-fMRI decode: speed.")
    assert "from the clip 52.1, semantic read-out 45.0)" in qa_reading(t.assign(semantic=[45.0, 50.0]))
    with pytest.raises(KeyError, match="shuffled_high"):
        qa_reading(t.drop(columns="shuffled_high"))


def test_concept_reading_names_expected_region_and_controls():
    from llm4brain.dialogue import concept_reading

    rows = [("agent", "LOC", "agent", True, 0.90, 0.001), ("agent", "EVC", "lowlevel", False, 0.95, 0.001),
            ("agent", "M1", "none", False, 0.62, 0.3), ("agent", "A1", "none", False, 0.48, 0.6)]
    t = pd.DataFrame([dict(phrase=p, region=r, region_group=g, expected=e, auc=a, p_spatial=ps, n_trials=12)
                      for p, r, g, e, a, ps in rows])
    txt = concept_reading(t)
    assert "agent (12 trials): LOC AUC 0.90 (p_spatial < 0.05), strongest in EVC (AUC 0.95)" in txt
    assert "negative controls up to AUC 0.62 (M1)" in txt
    t.loc[t.region == "LOC", "auc"] = 0.99
    assert "its expected region is the strongest" in concept_reading(t)


def test_concept_reading_lists_phrases_without_a_score():
    """A phrase whose AUCs are all NaN (no finite attribution map, as on the smoke profile) is
    listed as not scored instead of failing the notebook."""
    import numpy as np
    from llm4brain.dialogue import concept_reading

    rows = [("agent", "LOC", "agent", True, 0.90, 0.001), ("agent", "M1", "none", False, 0.55, 0.4),
            ("scene", "PPA", "scene", True, np.nan, np.nan), ("scene", "M1", "none", False, np.nan, np.nan)]
    t = pd.DataFrame([dict(phrase=p, region=r, region_group=g, expected=e, auc=a, p_spatial=ps, n_trials=3)
                      for p, r, g, e, a, ps in rows])
    txt = concept_reading(t)
    assert "agent (3 trials): LOC AUC 0.90" in txt and "Not scored" in txt and "scene (3 trials)." in txt
    only = concept_reading(t[t.phrase == "scene"])
    assert "No phrase with an expected region could be scored" in only and "scene (3 trials)" in only


def test_simulation_reading_reads_the_subject_table():
    from llm4brain.evaluation.reading import simulation_reading

    t = pd.DataFrame([dict(subject="01", gain=1.1, noise_sd_pct=0.5, hrf_peak_shift_s=-0.3, shift_mm=[3, 4, 0]),
                      dict(subject="02", gain=0.8, noise_sd_pct=0.6, hrf_peak_shift_s=0.7, shift_mm=[0, 0, 1])])
    txt = simulation_reading(t, 0.8, n_runs=4, clips_per_run=60, n_targets=1)
    assert "2 subjects (1 for training, 1 held out as targets), 4 runs of 60 clips" in txt
    assert "varies by 0.80 % across clips against a thermal noise of 0.50 %" in txt and "1.6 : 1" in txt
    assert "noise is 0.50-0.60 %" in txt and "shift 1.0-5.0 mm" in txt and "0.70 s at most" in txt
    with pytest.raises(KeyError, match="shift_mm"):
        simulation_reading(t.drop(columns="shift_mm"), 0.8, n_runs=4, clips_per_run=60, n_targets=1)


def test_loading_reading_separates_controls_and_reads_the_lag_profile():
    from llm4brain.evaluation.reading import loading_reading

    rel = pd.DataFrame(dict(region=["LOC", "M1", "EVC"], voxels=[10, 20, 30],
                            median_single_trial_r=[0.44, 0.003, 0.02]))
    lags = pd.DataFrame(dict(time_s=[3, 5, 7, 3, 5, 7, 5], region=["LOC"] * 3 + ["EVC"] * 3 + ["M1"],
                             r=[0.1, 0.5, 0.3, 0.0, 0.3, 0.1, 0.9]))
    txt = loading_reading(rel, untuned=["M1"], lags=lags, block_s=[5, 7], splits={"train": 720})
    assert "LOC 0.44, EVC 0.02; in the regions tuned to nothing (M1) at most 0.00" in txt
    assert "above that range here: LOC." in txt
    assert "best +5 s after the onset (mean r 0.40" in txt          # M1's 0.9 is not averaged in
    assert "+5 s (r 0.40), +7 s (r 0.20)" in txt and "train 720" in txt
    assert "lag" not in loading_reading(rel)                       # real data: no lag profile
    assert "cannot be measured" in loading_reading(rel.assign(median_single_trial_r=float("nan")))
    with pytest.raises(KeyError, match="median_single_trial_r"):
        loading_reading(rel.drop(columns="median_single_trial_r"))
