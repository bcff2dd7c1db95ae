"""Evaluation metrics: tagging numbers, the DESED 527 -> 10 mapping, intersection-based event F1."""

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from htsat_jax.evaluation import metrics
from htsat_jax.inference.events import Event


def by_file(rows):
    """(filename, onset, offset, label) rows -> {filename: [Event]}."""
    out = {}
    for filename, onset, offset, label in rows:
        out.setdefault(filename, []).append(Event(label, onset, offset, 1.0))
    return out


# --------------------------------------------------------------------------------------------
# Tagging
# --------------------------------------------------------------------------------------------

def test_average_precision_matches_hand_computation_and_sklearn():
    target = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.4, 0.2], [0.3, 0.3, 0.3], [0.1, 0.2, 0.4]])
    ap = metrics.average_precision_per_class(target, scores)
    # Class 0 ranked: 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-) -> precisions at the hits 1/1 and 2/3.
    # Class 1: its single positive is ranked 2nd -> 1/2. Class 2 has no positive -> NaN.
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(0.5)
    assert math.isnan(ap[2])
    np.testing.assert_allclose(ap[:2], average_precision_score(target[:, :2], scores[:, :2], average=None))
    result = metrics.mean_average_precision(target, scores)
    assert result["mAP"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert result["num_classes_scored"] == 2


def test_average_precision_single_scored_class_and_no_positives():
    target = np.array([[1, 0], [0, 0]])
    ap = metrics.average_precision_per_class(target, np.array([[0.2, 0.1], [0.7, 0.3]]))
    assert ap[0] == pytest.approx(0.5) and math.isnan(ap[1])
    empty = metrics.mean_average_precision(np.zeros((3, 2)), np.ones((3, 2)))
    assert math.isnan(empty["mAP"]) and empty["num_classes_scored"] == 0


def test_d_prime_is_taken_on_the_mean_auc():
    # Class 0 separates perfectly (AUC 1); class 1 has AUC 0.5 by hand: positives 0.6, 0.1 against
    # negatives 0.4, 0.2 win 2 of 4 pairs. Classes 2 and 3 (all 1 / all 0) cannot be scored.
    target = np.array([[1, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0]])
    scores = np.array([[0.9, 0.6, 0.5, 0.5], [0.1, 0.4, 0.5, 0.5],
                       [0.8, 0.1, 0.5, 0.5], [0.2, 0.2, 0.5, 0.5]])
    result = metrics.mean_auc(target, scores)
    assert result["mAUC"] == pytest.approx(0.75)
    assert result["d_prime"] == pytest.approx(0.6744897501960817 * math.sqrt(2))  # not mean(inf, 0)
    assert (result["num_classes_scored"], result["num_classes_skipped"]) == (2, 2)


def test_d_prime_perfect_and_random_scores():
    rng = np.random.default_rng(0)
    target = (rng.random((4000, 3)) < 0.3).astype(np.int64)
    perfect = metrics.mean_auc(target, target + 0.1 * rng.random(target.shape))
    assert perfect["mAUC"] == 1.0 and perfect["d_prime"] == math.inf
    random = metrics.mean_auc(target, rng.random(target.shape))
    assert abs(random["mAUC"] - 0.5) < 0.02 and abs(random["d_prime"]) < 0.08
    assert metrics.d_prime(0.5) == 0.0 and math.isnan(metrics.d_prime(math.nan))


def test_accuracy():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    assert metrics.accuracy(np.array([0, 2, 1, 1]), scores) == 0.75
    assert math.isnan(metrics.accuracy(np.zeros(0, np.int64), np.zeros((0, 3))))
    with pytest.raises(ValueError):
        metrics.accuracy(np.array([0, 1]), scores)


def test_tagging_metrics_keys_types_and_tiny_eval_sets():
    rng = np.random.default_rng(1)
    target = (rng.random((8, 527)) < 0.01).astype(np.float32)  # most classes never positive
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn / numpy warnings either
        multi = metrics.tagging_metrics(target, rng.random((8, 527)), multi_label=True)
    assert set(multi) == {"mAP", "mAUC", "d_prime"}
    assert all(type(v) is float for v in multi.values())
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    one_hot = np.eye(50, dtype=np.float32)[labels]
    scores = np.full((8, 50), 0.01)
    scores[np.arange(8), labels] = 0.9
    scores[7] = 0.0
    scores[7, 5] = 1.0  # one wrong clip
    single = metrics.tagging_metrics(one_hot, scores, multi_label=False)
    assert set(single) == {"accuracy", "mAP"} and all(type(v) is float for v in single.values())
    assert single["accuracy"] == 7 / 8
    # Class 3: clip 3 ranks 1st, clip 7 (score 0.0) last of 8, below the six 0.01s -> (1 + 2/8) / 2.
    assert single["mAP"] == pytest.approx((1 + 1 + 1 + 0.625) / 4)
    nothing = metrics.tagging_metrics(np.zeros((2, 4)), np.zeros((2, 4)), multi_label=True)
    assert all(math.isnan(v) for v in nothing.values())
    with pytest.raises(ValueError, match="one-hot"):
        metrics.tagging_metrics(np.zeros((2, 4)), np.zeros((2, 4)), multi_label=False)
    with pytest.raises(ValueError):
        metrics.tagging_metrics(np.full((2, 4), 0.5), np.zeros((2, 4)), multi_label=True)


# --------------------------------------------------------------------------------------------
# DESED mapping
# --------------------------------------------------------------------------------------------

def test_desed_constants_match_the_builder_and_the_official_table():
    from tfds_builders.desed.desed import CLASS_NAMES
    assert metrics.DESED_CLASSES == CLASS_NAMES
    groups = dict(zip(metrics.DESED_CLASSES, metrics.DESED_AUDIOSET_INDICES))
    assert groups["Speech"] == tuple(range(8))
    assert groups["Alarm_bell_ringing"] == (310, *range(388, 403))
    assert groups["Frying"] == (366, 367, 368) and groups["Cat"] == (81, 82, 83, 84, 85)
    flat = [i for idx in metrics.DESED_AUDIOSET_INDICES for i in idx]
    assert len(flat) == len(set(flat)) == 8 + 3 + 1 + 10 + 1 + 1 + 16 + 5 + 6 + 1
    thresholds = dict(zip(metrics.DESED_CLASSES, metrics.DESED_THRESHOLDS))
    assert thresholds == {"Speech": 0.275, "Frying": 0.20, "Dishes": 0.20, "Running_water": 0.23,
                          "Blender": 0.48, "Electric_shaver_toothbrush": 0.20, "Alarm_bell_ringing": 0.18,
                          "Cat": 0.51, "Dog": 0.39, "Vacuum_cleaner": 0.14}


# --------------------------------------------------------------------------------------------
# Event F1
# --------------------------------------------------------------------------------------------

DUR = {"a.wav": 10.0, "b.wav": 10.0}


def f1_of(gt_rows, det_rows, classes=("Dog",), **kwargs):
    return metrics.event_f1(by_file(gt_rows), by_file(det_rows), DUR, class_names=classes, **kwargs)


def counts(result, c):
    return result["tp"][c], result["fp"][c], result["fn"][c]


def test_event_f1_perfect_detections():
    gt = [("a.wav", 1.0, 3.0, "Dog"), ("a.wav", 4.0, 6.0, "Cat"), ("b.wav", 0.0, 2.0, "Dog")]
    result = f1_of(gt, gt, classes=("Cat", "Dog"))
    assert result["macro_f1"] == 1.0 and result["f1"] == {"Cat": 1.0, "Dog": 1.0}
    assert counts(result, "Dog") == (2, 0, 0)


def test_detection_with_40_percent_on_ground_truth_fails_dtc_and_is_a_false_positive():
    gt = [("a.wav", 2.0, 4.0, "Dog")]
    result = f1_of(gt, [("a.wav", 3.0, 5.5, "Dog")])   # 1 s of 2.5 s on the GT = 40 %
    assert counts(result, "Dog") == (0, 1, 1) and result["f1"]["Dog"] == 0.0
    # 1 s of 1.8 s (56 %) passes the DTC and covers exactly half the GT: GTC holds at equality.
    result = f1_of(gt, [("a.wav", 3.0, 4.8, "Dog")])
    assert counts(result, "Dog") == (1, 0, 0) and result["f1"]["Dog"] == 1.0


def test_detection_covering_less_than_half_the_ground_truth_is_a_miss_but_not_a_false_positive():
    result = f1_of([("a.wav", 0.0, 4.0, "Dog")], [("a.wav", 1.0, 2.5, "Dog")])  # 1.5 / 4 of the GT
    assert counts(result, "Dog") == (0, 0, 1) and result["f1"]["Dog"] == 0.0


def test_fragments_sum_for_gtc_and_one_detection_can_hit_two_events():
    # Two accepted fragments cover (1.5 + 1) / 4 = 62.5 % of one GT.
    result = f1_of([("a.wav", 0.0, 4.0, "Dog")], [("a.wav", 0.0, 1.5, "Dog"), ("a.wav", 2.0, 3.0, "Dog")])
    assert counts(result, "Dog") == (1, 0, 0)
    # One detection over two GT events: (1 + 1) / 3 of it is on GT -> accepted, both GTs covered.
    result = f1_of([("a.wav", 0.0, 1.0, "Dog"), ("a.wav", 2.0, 3.0, "Dog")], [("a.wav", 0.0, 3.0, "Dog")])
    assert counts(result, "Dog") == (2, 0, 0)
    # Rejected detections do not count towards coverage: 1 s of 4 s on the GT.
    result = f1_of([("a.wav", 0.0, 1.0, "Dog")], [("a.wav", 0.0, 4.0, "Dog")])
    assert counts(result, "Dog") == (0, 1, 1)


def test_macro_f1_over_classes_and_the_psds_eval_zero_tp_quirk():
    gt = [("a.wav", 0.0, 2.0, "Cat"),                                  # Cat: found -> F 1
          ("a.wav", 3.0, 5.0, "Dog"), ("b.wav", 3.0, 5.0, "Dog"),      # Dog: 1 hit, 1 miss, 1 FP
          ("b.wav", 6.0, 8.0, "Speech")]                               # Speech: missed -> F 0
    det = [("a.wav", 0.0, 2.0, "Cat"), ("a.wav", 3.0, 5.0, "Dog"), ("b.wav", 8.5, 9.0, "Dog")]
    classes = ("Cat", "Dog", "Speech", "Blender")                       # Blender: nothing at all -> NaN
    result = f1_of(gt, det, classes=classes)
    assert counts(result, "Dog") == (1, 1, 1)
    assert result["f1"]["Dog"] == pytest.approx(2 / (2 + 1 + 1))
    assert result["f1"]["Speech"] == 0.0 and math.isnan(result["f1"]["Blender"])
    assert result["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)
    # psds_eval 0.5.3 gives classes without TP a NaN F and leaves them out of the mean.
    quirk = f1_of(gt, det, classes=classes, nan_for_zero_tp=True)
    assert math.isnan(quirk["f1"]["Speech"]) and quirk["macro_f1"] == pytest.approx((1 + 0.5) / 2)


def test_cross_triggers_files_without_events_and_detections_past_the_end():
    gt = [("a.wav", 0.0, 2.0, "Dog")]
    det = [("a.wav", 0.0, 2.0, "Cat"),      # on Dog GT: FP for Cat and a Cat -> Dog cross-trigger
           ("b.wav", 1.0, 2.0, "Cat"),      # b.wav has no GT at all: FP
           ("b.wav", 10.0, 11.0, "Cat")]    # starts at the end of the 10 s file: ignored (psds_eval)
    result = f1_of(gt, det, classes=("Cat", "Dog"))
    assert counts(result, "Cat") == (0, 2, 0) and result["f1"]["Cat"] == 0.0
    assert counts(result, "Dog") == (0, 0, 1)
    assert result["cross_triggers"] == {"Cat": 1, "Dog": 0}
    assert f1_of(gt, det, classes=("Cat", "Dog"), cttc=1.0)["cross_triggers"]["Cat"] == 1
    # Only 1 s of the 3 s detection lies on the Dog GT: below cttc 0.5.
    shifted = f1_of(gt, [("a.wav", 1.0, 4.0, "Cat")], classes=("Cat", "Dog"), cttc=0.5)
    assert shifted["cross_triggers"]["Cat"] == 0 and shifted["fp"]["Cat"] == 1


def test_overlapping_same_class_events_are_merged_and_zero_length_dropped():
    gt = [("a.wav", 0.0, 2.0, "Dog"), ("a.wav", 1.0, 3.0, "Dog"), ("a.wav", 5.0, 5.0, "Dog")]
    result = f1_of(gt, [("a.wav", 0.0, 3.0, "Dog")])
    assert counts(result, "Dog") == (1, 0, 0)


def test_event_f1_rejects_bad_input():
    with pytest.raises(ValueError, match="label"):
        f1_of([("a.wav", 0.0, 1.0, "Dgo")], [])
    with pytest.raises(ValueError, match="duration"):
        f1_of([("c.wav", 0.0, 1.0, "Dog")], [])
    with pytest.raises(ValueError, match="onset"):
        f1_of([], [("a.wav", 2.0, 1.0, "Dog")])
    with pytest.raises(ValueError, match="dtc"):
        f1_of([], [], dtc=1.5)


# A fixed multi-file case; the expected numbers were computed by hand (comments) and agree with
# psds_eval 0.5.3's PSDSEval(0.5, 0.5, 0.3).compute_macro_f_score, which gave
# {A: 6/7, B: 2/3, C: 1/2, D: NaN}, macro 0.6746 (see test_matches_psds_eval_when_installed).
CASE_GT = [
    ("f1.wav", 0.0, 4.0, "A"), ("f1.wav", 5.0, 6.0, "A"), ("f1.wav", 1.0, 3.0, "B"),
    ("f1.wav", 7.0, 9.5, "C"),
    ("f2.wav", 0.5, 2.5, "B"), ("f2.wav", 3.0, 3.5, "B"), ("f2.wav", 6.0, 10.0, "A"),
    ("f3.wav", 2.0, 8.0, "C"), ("f3.wav", 0.0, 1.0, "D"),
]
CASE_DET = [
    ("f1.wav", 0.0, 1.5, "A"), ("f1.wav", 2.0, 3.0, "A"),  # jointly cover 62.5 % of A[0, 4]: TP
    ("f1.wav", 4.5, 6.5, "A"),    # 50 % on A[5, 6] (DTC at equality), covers it: TP
    ("f1.wav", 1.0, 3.0, "C"),    # only on B (and A): FP, cross-triggers C->A and C->B
    ("f1.wav", 7.5, 8.0, "C"),    # inside C[7, 9.5] but covers 20 %: C[7, 9.5] is a FN, no FP
    ("f2.wav", 0.0, 3.4, "B"),    # (2 + 0.4) / 3.4 on B: accepted, covers both B events: 2 TP
    ("f2.wav", 4.0, 9.0, "A"),    # 3 / 5 on A: accepted, covers 3 / 4 of A[6, 10]: TP
    ("f2.wav", 9.5, 12.0, "B"),   # partly inside the file: FP
    ("f2.wav", 10.5, 11.0, "C"),  # wholly past the end: not counted
    ("f3.wav", 0.0, 5.1, "C"),    # 3.1 / 5.1 on C: accepted ...
    ("f3.wav", 5.1, 6.0, "C"),    # ... touching fragment, accepted; (3.1 + 0.9) / 6 of C: TP
    ("f3.wav", 8.0, 9.0, "A"),    # no A in f3 (only touches C): FP
    ("f1.wav", 0.0, 1.0, "D"),    # D only occurs in f3: FP, cross-triggers D->A
]
CASE_DURATIONS = {"f1.wav": 10.0, "f2.wav": 10.0, "f3.wav": 10.0}


def test_fixed_case_hand_counts():
    result = metrics.event_f1(by_file(CASE_GT), by_file(CASE_DET), CASE_DURATIONS, class_names="ABCD")
    assert result["tp"] == {"A": 3, "B": 2, "C": 1, "D": 0}
    assert result["fp"] == {"A": 1, "B": 1, "C": 1, "D": 1}
    assert result["fn"] == {"A": 0, "B": 1, "C": 1, "D": 1}
    assert result["cross_triggers"] == {"A": 0, "B": 0, "C": 2, "D": 1}
    assert result["f1"] == pytest.approx({"A": 6 / 7, "B": 2 / 3, "C": 1 / 2, "D": 0.0})
    assert result["macro_f1"] == pytest.approx((6 / 7 + 2 / 3 + 1 / 2) / 4)
    quirk = metrics.event_f1(by_file(CASE_GT), by_file(CASE_DET), CASE_DURATIONS, class_names="ABCD",
                             nan_for_zero_tp=True)
    assert math.isnan(quirk["f1"]["D"]) and quirk["macro_f1"] == pytest.approx(0.6746031746031745)


def _random_case(rng, files=6, classes="ABCD"):
    """Random non-overlapping (per file and class) GT and detections, every class in the GT."""
    def spans(n, lo, hi):
        points = np.sort(rng.uniform(lo, hi, 2 * n))
        return [(float(points[2 * i]), float(points[2 * i + 1])) for i in range(n)]
    gt, det = [], []
    for f in range(files):
        for c in classes:
            gt += [(f"f{f}.wav", on, off, c) for on, off in spans(int(rng.integers(0, 4)), 0.0, 10.0)]
            det += [(f"f{f}.wav", on, off, c) for on, off in spans(int(rng.integers(0, 5)), -0.5, 11.0)]
    gt += [("f0.wav", 0.0, 0.5 + i, c) for i, c in enumerate(classes) if not any(r[3] == c for r in gt)]
    return gt, det, {f"f{f}.wav": 10.0 for f in range(files)}


def test_clip_events_f1_thresholds_frame_maps():
    step = 0.01  # 1000 steps = 10 s
    probs = np.zeros((2, 1000, 2))
    probs[0, 100:300, 0] = 0.9           # clip 0: class a at 1-3 s, as in the GT
    probs[0, 500:520, 1] = 0.9           # clip 0: short b blip, no GT -> FP
    probs[1, 0:1000, 1] = 0.4            # clip 1: b everywhere at 0.4 -> below a 0.5 threshold
    gt = [[Event("a", 1.0, 3.0, 1.0)], metrics.events_from_arrays([2.0], [6.0], [1], ["a", "b"])]
    result = metrics.clip_events_f1(probs, gt, step, ["a", "b"], thresholds=0.5, durations=10.0)
    assert counts(result, "a") == (1, 0, 0) and counts(result, "b") == (0, 1, 1)
    assert result["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
    # With b's threshold lowered to 0.3 clip 1's b spans 0-10 s: 4 / 10 on the GT fails the DTC.
    low = metrics.clip_events_f1(probs, gt, step, ["a", "b"], thresholds=np.array([0.5, 0.3]))
    assert counts(low, "b") == (0, 2, 1)
    # Per-clip arrays of different lengths are accepted too.
    ragged = metrics.clip_events_f1([probs[0], probs[1, :700]], gt, step, ["a", "b"])
    assert counts(ragged, "a") == (1, 0, 0)
    with pytest.raises(ValueError):
        metrics.clip_events_f1(probs, gt[:1], step, ["a", "b"])


def test_lwlrap_is_label_weighted_lrap():
    from sklearn.metrics import label_ranking_average_precision_score
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=(40, 7))
    one_hot = np.eye(7)[rng.integers(0, 7, 40)]
    # With one positive per clip, label weighting equals sklearn's sample-weighted LRAP.
    assert metrics.lwlrap(one_hot, scores) == pytest.approx(label_ranking_average_precision_score(one_hot, scores))
    # Hand case: clip 0 positives {0, 2} ranked 1st and 3rd; clip 1 positive {1} ranked 2nd.
    target = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    s = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.1]])
    assert metrics.lwlrap(target, s) == pytest.approx((1 / 1 + 2 / 3 + 1 / 2) / 3)
    assert metrics.lwlrap(target, target) == 1.0


def test_micro_pr_auc_follows_keras_interpolation():
    rng = np.random.default_rng(4)
    target = (rng.uniform(size=(60, 5)) > 0.7).astype(np.float32)
    assert metrics.micro_pr_auc(target, target * 0.9 + 0.05) == pytest.approx(1.0)
    scores = rng.uniform(size=(60, 5))
    from sklearn.metrics import average_precision_score
    ap = average_precision_score(target.ravel(), scores.ravel())
    # 200 thresholds with interpolated precision: close to, not equal to, the exact average precision.
    assert metrics.micro_pr_auc(target, scores) == pytest.approx(ap, abs=0.03)
    # Two thresholds' worth of distinct scores: the Davis-Goadrich area of a two-point curve by hand.
    t = np.array([[1, 0], [0, 1]], np.float32)
    p = np.array([[0.9, 0.2], [0.3, 0.8]])  # both positives above both negatives
    assert metrics.micro_pr_auc(t, p) == pytest.approx(1.0)
