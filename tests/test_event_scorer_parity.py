"""Cross-check of our event metrics against the maintained DCASE scorer ``sed_scores_eval``.

``metrics.event_f1`` re-implements the intersection-based F1 (DTC 0.5, GTC 0.5, CTTC 0.3); here it
must give the same per-class counts and F-scores as ``sed_scores_eval.intersection_based`` on
(1) a hand-written multi-clip case and (2) the trainer's path, frame maps thresholded into events.
``sed_scores_eval`` is pinned in requirements.txt, so these tests run (never skip) in CI.

The scorer takes score tables (one row per frame: onset, offset, a score per class) and detects
``score > threshold``, as ``events.framewise_to_events`` does. Event lists are turned into binary
tables whose rows are the intervals between consecutive event boundaries.
"""

import warnings
from collections import namedtuple

import numpy as np
import pytest

from htsat_jax.evaluation import metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # dcase_util (via sed_eval) warns about pkg_resources on import
    from sed_scores_eval import intersection_based
    from sed_scores_eval.base_modules.precision_recall import single_fscore_from_intermediate_statistics
    from sed_scores_eval.base_modules.scores import create_score_dataframe

from htsat_jax.evaluation import psds as psds_lib

DTC, GTC, CTTC = 0.5, 0.5, 0.3  # metrics.event_f1's defaults, the official DESED F1 criteria


def scorer_statistics(scores, ground_truth):
    """sed_scores_eval's intersection-based counts for every decision threshold at once."""
    stats, _ = intersection_based.accumulated_intermediate_statistics(
        scores, ground_truth, dtc_threshold=DTC, gtc_threshold=GTC, cttc_threshold=CTTC)
    return stats


def scorer_at(stats, threshold):
    """F-scores (per class, "macro_average") and per-class (tp, fp, fn, cross-triggers) at ``threshold``
    (a scalar or {class: threshold}); detection is ``score > threshold``."""
    f, _, _, at_thr = single_fscore_from_intermediate_statistics(stats, threshold)
    counts = {c: (int(s["tps"]), int(s["fps"]), int(s["n_ref"] - s["tps"]), int(sum(s["cts"].values())))
              for c, s in at_thr.items()}
    return f, counts


def our_counts(result, classes):
    return {c: (result["tp"][c], result["fp"][c], result["fn"][c], result["cross_triggers"][c]) for c in classes}


def assert_same_f1(ours, theirs, classes):
    for c in classes:
        assert ours["f1"][c] == pytest.approx(theirs[c], abs=1e-9), c
    assert ours["macro_f1"] == pytest.approx(theirs["macro_average"], abs=1e-9)


# --------------------------------------------------------------------------------------------
# 1. A hand-written case: partial overlaps, fragments, FPs, misses, events across clip ends
# --------------------------------------------------------------------------------------------

CLASSES = ["Alarm", "Dog", "Speech"]
DURATIONS = {"c0": 10.0, "c1": 10.0, "c2": 8.0, "c3": 10.0}
GROUND_TRUTH = {
    "c0": [("Dog", 0.0, 4.0), ("Dog", 5.0, 6.0), ("Speech", 1.0, 3.0), ("Alarm", 7.0, 9.5)],
    "c1": [("Speech", 0.5, 2.5), ("Speech", 3.0, 3.5), ("Dog", 6.0, 10.0)],
    "c2": [("Alarm", 2.0, 7.0), ("Speech", 6.5, 9.0)],  # this Speech runs past the 8 s clip end
    "c3": [("Dog", 9.0, 11.0), ("Alarm", 0.0, 1.0)],    # and this Dog past the 10 s end
}
# Detections stay inside their clip, as framewise_to_events(max_seconds=duration) makes them.
DETECTIONS = {
    "c0": [("Dog", 0.0, 1.5), ("Dog", 2.0, 3.0),  # fragments jointly cover 62.5 % of Dog [0, 4]: TP
           ("Dog", 4.5, 6.5),      # half on Dog [5, 6] (DTC met at equality), covers it: TP
           ("Alarm", 1.0, 3.0),    # on Speech and Dog only: FP, cross-triggers Alarm->Speech, Alarm->Dog
           ("Alarm", 7.5, 8.0)],   # inside Alarm [7, 9.5] but covers 20 %: that GT is missed, no FP
    # (Speech [1, 3] in c0 has no detection at all: missed)
    "c1": [("Speech", 0.0, 3.4),   # 2.4 / 3.4 on Speech: accepted, covers both Speech events: 2 TP
           ("Dog", 4.0, 9.0),      # 3 / 5 on Dog: accepted, covers 75 % of Dog [6, 10]: TP
           ("Speech", 9.5, 10.0)],  # runs to the clip end on Dog: FP, cross-trigger Speech->Dog
    "c2": [("Alarm", 0.0, 5.1), ("Alarm", 5.5, 6.0),  # both accepted, cover 72 % of Alarm [2, 7]: TP
           ("Dog", 7.0, 8.0),      # on Speech: FP, cross-trigger Dog->Speech
           ("Speech", 7.0, 8.0)],  # to the clip end: accepted, covers 1 / 2.5 of Speech [6.5, 9]: missed
    "c3": [("Dog", 9.5, 10.0),     # accepted, covers 0.5 / 2 of Dog [9, 11] (clip ends at 10): missed
           ("Speech", 0.0, 1.0)],  # on Alarm: FP, cross-trigger Speech->Alarm
}
# (tp, fp, fn, cross-triggers) per class, counted by hand from the comments above.
EXPECTED_COUNTS = {"Alarm": (1, 1, 2, 2), "Dog": (3, 1, 1, 1), "Speech": (2, 2, 2, 2)}
EXPECTED_F1 = {"Alarm": 2 / (2 + 2 + 1), "Dog": 6 / (6 + 1 + 1), "Speech": 4 / (4 + 2 + 2)}


def as_events(rows_by_clip):
    return {clip: [metrics.Event(label, on, off, 1.0) for label, on, off in rows]
            for clip, rows in rows_by_clip.items()}


def binary_score_table(detections, duration, classes):
    """Detections (label, onset, offset) -> a score table that is 1 inside them and 0 elsewhere.

    Same-class detections must not touch: the table would join them into one.
    """
    times = np.array(sorted({0.0, duration} | {t for _, on, off in detections for t in (on, off)}))
    middles = (times[:-1] + times[1:]) / 2
    scores = np.zeros((len(middles), len(classes)))
    for label, on, off in detections:
        scores[(middles > on) & (middles < off), classes.index(label)] = 1.0
    return create_score_dataframe(scores, times, list(classes))


def test_hand_case_matches_sed_scores_eval():
    ours = metrics.event_f1(as_events(GROUND_TRUTH), as_events(DETECTIONS), DURATIONS, class_names=CLASSES,
                            dtc=DTC, gtc=GTC, cttc=CTTC)
    tables = {clip: binary_score_table(DETECTIONS[clip], DURATIONS[clip], CLASSES) for clip in DURATIONS}
    truth = {clip: [(on, off, label) for label, on, off in rows] for clip, rows in GROUND_TRUTH.items()}
    theirs, their_counts = scorer_at(scorer_statistics(tables, truth), 0.5)

    assert our_counts(ours, CLASSES) == EXPECTED_COUNTS
    assert their_counts == EXPECTED_COUNTS
    assert ours["f1"] == pytest.approx(EXPECTED_F1, abs=1e-12)
    assert_same_f1(ours, theirs, CLASSES)
    assert ours["macro_f1"] == pytest.approx(0.55, abs=1e-12)

    # The plain F-score entry point gives the same numbers.
    f, _, _, _ = intersection_based.fscore(tables, truth, 0.5, dtc_threshold=DTC, gtc_threshold=GTC)
    assert_same_f1(ours, f, CLASSES)


# --------------------------------------------------------------------------------------------
# 2. The trainer's path: frame maps -> framewise_to_events (threshold, clipped) -> event_f1
# --------------------------------------------------------------------------------------------

STEP = 0.08          # seconds per frame-map step
STEPS = 128          # 10.24 s of steps: the maps run past every clip's end and are cut there
MAP_CLASSES = ["a", "b", "c", "d"]


def frame_map_case(seed, clips=6):
    """Smooth random frame maps, raised over random GT events; clip lengths 10, 9.5 or 7.3 s.

    GT times are unrounded floats, so no overlap ratio equals a criterion exactly (see
    test_exact_decimal_ties_are_accepted_as_by_sed_scores_eval for what happens at such ties).
    """
    rng = np.random.default_rng(seed)
    maps, truth, durations = [], [], []
    for _ in range(clips):
        duration = float(rng.choice([10.0, 9.5, 7.3]))
        noise = rng.uniform(0.0, 1.0, (STEPS + 8, len(MAP_CLASSES)))
        frames = np.stack([np.convolve(col, np.ones(9) / 9, mode="valid") for col in noise.T], axis=1)
        frames = (frames - frames.min()) / (frames.max() - frames.min())
        events = []
        for k, label in enumerate(MAP_CLASSES):
            times = np.sort(rng.uniform(0.0, duration + 1.0, 2 * int(rng.integers(0, 3))))  # may pass the end
            for on, off in times.reshape(-1, 2):
                events.append(metrics.Event(label, float(on), float(off), 1.0))
                frames[int(on / STEP):int(off / STEP) + 1, k] += rng.uniform(0.2, 0.6)
        maps.append(frames)
        truth.append(events)
        durations.append(duration)
    for label in MAP_CLASSES:  # the scorer needs a GT event of every class somewhere
        if not any(ev.label == label for events in truth for ev in events):
            truth[0].append(metrics.Event(label, 1.0, 2.5, 1.0))
    return maps, truth, durations


def frame_score_tables(maps, durations, names, classes):
    """Frame maps cut at each clip's duration, step boundaries rounded as framewise_to_events does."""
    tables = {}
    for name, frames, duration in zip(names, maps, durations):
        starts = np.round(np.arange(len(frames)) * STEP, 4)
        keep = int(np.count_nonzero(starts < duration))
        tables[name] = create_score_dataframe(frames[:keep], np.append(starts[:keep], duration), list(classes))
    return tables


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_frame_map_thresholding_matches_sed_scores_eval(seed):
    maps, truth, durations = frame_map_case(seed)
    names = [f"clip_{i:05d}" for i in range(len(maps))]  # clip_events_f1's clip ids
    tables = frame_score_tables(maps, durations, names, MAP_CLASSES)
    gt = {name: [(ev.onset_s, ev.offset_s, ev.label) for ev in events] for name, events in zip(names, truth)}
    stats = scorer_statistics(tables, gt)
    per_class = {"a": 0.4, "b": 0.6, "c": 0.5, "d": 0.7}
    for threshold in (0.3, 0.5, 0.8, per_class):
        thr = np.array([per_class[c] for c in MAP_CLASSES]) if isinstance(threshold, dict) else threshold
        ours = metrics.clip_events_f1(maps, truth, STEP, MAP_CLASSES, thresholds=thr, durations=durations,
                                      dtc=DTC, gtc=GTC, cttc=CTTC)
        theirs, their_counts = scorer_at(stats, threshold)
        assert our_counts(ours, MAP_CLASSES) == their_counts, threshold
        assert_same_f1(ours, theirs, MAP_CLASSES)
        assert sum(ours["tp"].values()) > 0 and sum(ours["fp"].values()) > 0  # a non-trivial operating point


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "event_f1 compares overlap ratios with the criteria exactly, as psds_eval 0.5.3 does; sed_scores_eval "
    "rounds both sides to 1e-6 s (time_decimals=6). A detection 0.72-4.48 s on GT 2.518-4.398 s overlaps "
    "exactly half of it in decimal seconds but 0.4999999999999999 in floats: rejected by event_f1 (FP + "
    "missed GT), accepted by sed_scores_eval (TP). Remove this marker if event_f1 gets such a tolerance."))
def test_exact_decimal_ties_are_accepted_as_by_sed_scores_eval():
    frames = np.zeros((125, 2))
    frames[9:56, 0] = 0.9  # steps 9..55: 0.72-4.48 s
    # Class "d" (missed) is only there because sed_scores_eval fails on a single class with a CTTC.
    truth = [[metrics.Event("c", 2.518, 4.398, 1.0), metrics.Event("d", 8.0, 9.0, 1.0)]]
    ours = metrics.clip_events_f1([frames], truth, STEP, ["c", "d"], thresholds=0.5, durations=10.0)
    tables = {"clip_00000": create_score_dataframe(frames, np.round(np.arange(126) * STEP, 4), ["c", "d"])}
    gt = {"clip_00000": [(ev.onset_s, ev.offset_s, ev.label) for ev in truth[0]]}
    theirs, their_counts = scorer_at(scorer_statistics(tables, gt), 0.5)
    assert their_counts["c"] == (1, 0, 0, 0) and theirs["c"] == 1.0
    assert our_counts(ours, ["c"])["c"] == (1, 0, 0, 0)  # fails: (0, 1, 1, 0)


# --------------------------------------------------------------------------------------------
# 3. PSDS (htsat_jax_psds_lib.psds, a thin wrapper around sed_scores_eval's exact PSDS)
# --------------------------------------------------------------------------------------------

Ev = namedtuple("Ev", "label onset_s offset_s score")  # any object with these fields will do
PSDS_CLASSES = ["a", "b", "c"]


def psds_case(seed=0, clips=8, steps=125):
    """One GT event per class per clip; ``perfect`` is 0.9 on the GT steps (rounded to the grid).

    The events are short (0.4-0.9 s of 10 s) so that a detector that is on all the time fails even
    scenario 2's lenient DTC of 0.1 instead of scoring its hits at a small eFPR.
    """
    rng = np.random.default_rng(seed)
    truth, perfect = [], np.zeros((clips, steps, len(PSDS_CLASSES)))
    for i in range(clips):
        events = []
        for k, label in enumerate(PSDS_CLASSES):
            on = rng.uniform(0.0, 6.0)
            off = on + rng.uniform(0.4, 0.9)
            events.append(Ev(label, on, off, 1.0))
            perfect[i, int(round(on / STEP)):int(round(off / STEP)), k] = 0.9
        truth.append(events)
    return perfect, truth, rng


def partly_missed(perfect, rng, noise=0.1):
    """``perfect`` without the events of clip i, class k where (i + k) % 3 == 0, plus clipped noise."""
    maps = perfect.copy()
    for i in range(maps.shape[0]):
        for k in range(maps.shape[2]):
            if (i + k) % 3 == 0:
                maps[i, :, k] = 0.0
    return np.clip(maps + rng.normal(0.0, noise, maps.shape), 0.0, 1.0)


@pytest.mark.parametrize("scenario", [1, 2])
def test_psds_perfect_partial_random(scenario):
    perfect, truth, rng = psds_case()
    best = psds_lib.psds(perfect, truth, STEP, PSDS_CLASSES, scenario=scenario, durations=10.0)
    assert best["psds"] == pytest.approx(1.0, abs=1e-9)
    assert best["per_class"] == pytest.approx(dict.fromkeys(PSDS_CLASSES, 1.0), abs=1e-9)
    # About a third of the events left out of the map (no FPs): recall 5/8, 6/8, 5/8 at eFPR 0.
    middling = psds_lib.psds(partly_missed(perfect, rng), truth, STEP, PSDS_CLASSES, scenario=scenario,
                               durations=10.0)["psds"]
    random = psds_lib.psds(rng.uniform(0.0, 1.0, perfect.shape), truth, STEP, PSDS_CLASSES,
                             scenario=scenario, durations=10.0)["psds"]
    assert 0.0 <= random < 0.05
    assert 0.3 < middling < 0.9 and random < middling


def test_psds_equals_a_direct_sed_scores_eval_call():
    perfect, truth, rng = psds_case(seed=1)
    # Clips shifted by up to 2 steps (0.16 s) and noisy: some events fail scenario 1's 0.7 criteria.
    shifts = rng.integers(-2, 3, len(perfect))
    shifted = np.stack([np.roll(clip, int(k), axis=0) for clip, k in zip(perfect, shifts)])
    maps = partly_missed(shifted, rng, noise=0.15)
    durations = [10.0, 9.5, 10.0, 7.3, 10.0, 10.0, 8.0, 10.0]  # shorter than the 10 s maps: cut
    names = [f"clip_{i:05d}" for i in range(len(maps))]
    tables = frame_score_tables(maps, durations, names, PSDS_CLASSES)
    gt = {name: sorted((ev.onset_s, ev.offset_s, ev.label) for ev in events) for name, events in zip(names, truth)}
    scenarios = {  # DCASE task 4 (DESED) scenarios, written out here to check PSDS_SCENARIOS too
        1: dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0,
                max_efpr=100.0),
        2: dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0,
                max_efpr=100.0),
    }
    values = []
    for scenario, kwargs in scenarios.items():
        direct, direct_per_class, _, _ = intersection_based.psds(
            tables, gt, dict(zip(names, durations)), unit_of_time="hour", **kwargs)
        ours = psds_lib.psds(maps, truth, STEP, PSDS_CLASSES, scenario=scenario, durations=durations)
        assert ours["psds"] == pytest.approx(float(direct), abs=1e-12)
        assert ours["per_class"] == pytest.approx({c: float(direct_per_class[c]) for c in PSDS_CLASSES}, abs=1e-12)
        values.append(ours["psds"])
    assert 0.0 < min(values) and max(values) < 1.0  # a case between the extremes
    # Scenario overrides reach the scorer.
    loose = psds_lib.psds(maps, truth, STEP, PSDS_CLASSES, scenario=1, durations=durations,
                            dtc_threshold=0.1, gtc_threshold=0.1)["psds"]
    assert loose >= values[0]


def test_psds_rejects_bad_input():
    perfect, truth, _ = psds_case(clips=2)
    with pytest.raises(ValueError, match="without any ground-truth"):
        psds_lib.psds(perfect, [[ev for ev in events if ev.label != "c"] for events in truth], STEP,
                        PSDS_CLASSES)
    with pytest.raises(ValueError, match="ground-truth lists"):
        psds_lib.psds(perfect, truth[:1], STEP, PSDS_CLASSES)
    with pytest.raises(ValueError, match="scenario"):
        psds_lib.psds(perfect, truth, STEP, PSDS_CLASSES, scenario=3)
    with pytest.raises(ValueError, match="label"):
        psds_lib.psds(perfect, [truth[0], [Ev("z", 0.0, 1.0, 1.0)]], STEP, PSDS_CLASSES)
