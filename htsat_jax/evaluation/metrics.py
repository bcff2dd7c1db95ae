"""Evaluation metrics: clip tagging (mAP, mAUC, d', accuracy) and event detection (intersection F1).

Tagging follows the official HTS-AT evaluation (spec section 8):

* AudioSet: ``mAP`` = mean of sklearn's per-class average precision, ``mAUC`` = mean of the
  per-class ROC AUC, ``d' = Phi^-1(mAUC) * sqrt(2)`` computed on the *mean* AUC.
* ESC-50 / Speech Commands: argmax accuracy.

Event detection (DESED localisation, synthetic event scenes) uses the intersection-based F1 of
``psds_eval`` (``PSDSEval(dtc=0.5, gtc=0.5, cttc=0.3).compute_macro_f_score(det, beta=1)``), the
metric behind the published HTS-AT DESED numbers. It is re-implemented here in numpy rather than
wrapping ``psds-eval==0.5.3``: that release (2022) is unmaintained (DCASE-REPO/DESED_task#80 notes
it was pulled from GitHub), it runs on pandas 3 only with deprecation warnings for APIs pandas 4
removes, it pulls pandas and pytest in as runtime dependencies, and its ``compute_macro_f_score``
returns NaN (silently left out of the macro mean) for any class with zero true positives. The counting rules are the same (see
:func:`event_f1`); ``tests/test_event_scorer_parity.py`` checks, in CI, that it equals the maintained
scorer ``sed_scores_eval`` (counts and F1) and that :mod:`htsat_jax.evaluation.psds` equals its PSDS.

Nothing here uses jax: every function takes and returns numpy arrays / python numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from htsat_jax.inference.events import Event, framewise_to_events

# ----------------------------------------------------------------------------------------------
# Clip tagging
# ----------------------------------------------------------------------------------------------


def _check_target_scores(target: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(target)
    scores = np.asarray(scores, dtype=np.float64)
    if target.ndim != 2 or target.shape != scores.shape:
        raise ValueError(f"target and scores must both be (N, C); got {target.shape} and {scores.shape}")
    if not np.isin(target, (0, 1)).all():
        raise ValueError("target must be 0/1 (multi-hot or one-hot)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return target.astype(np.int64), scores


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries, NaN when there are none (without numpy's empty-slice warning)."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def average_precision_per_class(target: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class average precision (sklearn's step-wise AP, as the official code).

    Args:
      target: ``(N, C)`` 0/1 labels.
      scores: ``(N, C)`` predicted probabilities (any monotone score works).

    Returns:
      ``(C,)`` float64. A class with no positive clip has no defined AP and gets NaN. (sklearn 1.0.2,
      which the official code ran, also gave NaN; current sklearn warns and returns 0, which would
      silently drag the mean down on small eval sets.)
    """
    target, scores = _check_target_scores(target, scores)
    ap = np.full(target.shape[1], np.nan)
    scored = np.flatnonzero(target.sum(axis=0) > 0)
    if scored.size:
        # One call with average=None over the scorable columns; a single column comes back as a
        # scalar, hence atleast_1d.
        ap[scored] = np.atleast_1d(
            average_precision_score(target[:, scored], scores[:, scored], average=None))
    return ap


def mean_average_precision(target: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    """mAP over the classes that have at least one positive clip.

    The official AudioSet number is a plain mean over all 527 classes; every class has positives in
    the AudioSet eval set, so the two agree there. Skipping positive-free classes keeps the number
    meaningful on small or single-label eval sets.

    Returns:
      ``{"mAP": float (NaN if no class has a positive), "num_classes_scored": int}``.
    """
    ap = average_precision_per_class(target, scores)
    return {"mAP": _nanmean(ap), "num_classes_scored": int(np.count_nonzero(~np.isnan(ap)))}


def roc_auc_per_class(target: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class ROC AUC; ``(C,)`` float64, NaN where a class lacks positives or negatives.

    The official code lets sklearn raise in that case; AudioSet eval never triggers it.
    """
    target, scores = _check_target_scores(target, scores)
    auc = np.full(target.shape[1], np.nan)
    positives = target.sum(axis=0)
    scored = np.flatnonzero((positives > 0) & (positives < target.shape[0]))
    if scored.size:
        auc[scored] = np.atleast_1d(roc_auc_score(target[:, scored], scores[:, scored], average=None))
    return auc


def d_prime(auc: float) -> float:
    """Sensitivity index ``d' = Phi^-1(auc) * sqrt(2)`` (inf for auc 1, -inf for 0, NaN for NaN).

    The official code applies it to the *mean* AUC, not per class then averaged.
    """
    return float(norm.ppf(auc) * math.sqrt(2.0))


def mean_auc(target: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    """Mean ROC AUC and d' over the classes with both positive and negative clips.

    Returns:
      ``{"mAUC": float, "d_prime": float, "num_classes_scored": int, "num_classes_skipped": int}``;
      mAUC and d' are NaN when no class can be scored.
    """
    auc = roc_auc_per_class(target, scores)
    m = _nanmean(auc)
    scored = int(np.count_nonzero(~np.isnan(auc)))
    return {"mAUC": m, "d_prime": d_prime(m), "num_classes_scored": scored,
            "num_classes_skipped": int(auc.size - scored)}


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 accuracy: fraction of ``argmax(scores, -1) == labels``.

    Args:
      labels: ``(N,)`` integer class indices.
      scores: ``(N, C)`` scores.

    Returns:
      a float in [0, 1]; NaN for N = 0. Ties go to the lowest index (``np.argmax``, as the official
      ``accuracy_score(target, argmax(pred, 1))``).
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1 or scores.ndim != 2 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"need labels (N,) and scores (N, C); got {labels.shape} and {scores.shape}")
    if labels.size == 0:
        return math.nan
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def lwlrap(target: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (the FSD50K / DCASE 2019 task 2 metric).

    For every positive (clip, class) pair: the share of the clip's positive classes among the
    classes scored at least as high; averaged over all positive pairs (each pair weighs the same,
    so classes weigh by their number of positives). NaN without any positive.
    """
    target, scores = _check_target_scores(target, scores)
    total, pairs = 0.0, 0
    for row_target, row_scores in zip(target > 0, scores):
        positives = np.flatnonzero(row_target)
        if positives.size == 0:
            continue
        at_least = row_scores[None, :] >= row_scores[positives][:, None]  # (P, C)
        rank = at_least.sum(axis=1)
        hits = (at_least & row_target[None, :]).sum(axis=1)
        total += float(np.sum(hits / rank))
        pairs += positives.size
    return total / pairs if pairs else math.nan


def micro_pr_auc(target: np.ndarray, scores: np.ndarray, num_thresholds: int = 200) -> float:
    """Keras ``AUC(curve="PR", num_thresholds=200)`` on all (clip, class) pairs at once (micro), the
    "validation AUC (PR)" LEAN selects on: counts at ``num_thresholds`` evenly spaced thresholds,
    the area by Davis & Goadrich's interpolation between them, as Keras computes it."""
    target, scores = _check_target_scores(target, scores)
    y, p = target.reshape(-1) > 0, scores.reshape(-1).astype(np.float64)
    eps = 1e-7
    thresholds = np.concatenate([[-eps], (np.arange(1, num_thresholds - 1)) / (num_thresholds - 1), [1.0 + eps]])
    above = p[None, :] > thresholds[:, None]  # (T, N)
    tp = (above & y[None, :]).sum(axis=1).astype(np.float64)
    fp = (above & ~y[None, :]).sum(axis=1).astype(np.float64)
    fn = y.sum() - tp
    if y.sum() == 0:
        return math.nan
    dtp = tp[:-1] - tp[1:]
    pos = tp + fp
    dp = pos[:-1] - pos[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(dp > 0, dtp / np.where(dp > 0, dp, 1.0), 0.0)
        intercept = tp[1:] - slope * pos[1:]
        ratio = np.where((pos[:-1] > 0) & (pos[1:] > 0), pos[:-1] / np.where(pos[1:] > 0, pos[1:], 1.0), 1.0)
        denom = tp[1:] + fn[1:]
        increments = np.where(denom > 0, slope * (dtp + intercept * np.log(ratio)) / np.where(denom > 0, denom, 1.0),
                              0.0)
    return float(np.sum(increments))


def tagging_metrics(target: np.ndarray, scores: np.ndarray, *, multi_label: bool) -> dict[str, float]:
    """The clip-level numbers the trainer logs.

    Args:
      target: ``(N, C)`` 0/1, multi-hot (``multi_label=True``) or one-hot (``False``).
      scores: ``(N, C)`` clip-wise probabilities.
      multi_label: AudioSet / DESED / synthetic events (True) vs ESC-50 / Speech Commands (False).

    Returns:
      ``{"mAP", "mAUC", "d_prime"}`` for multi-label, ``{"accuracy", "mAP"}`` for single-label, all
      python floats. Undefined values (e.g. an 8-clip eval set where no class has both positives
      and negatives) come back as NaN rather than raising.
    """
    target, scores = _check_target_scores(target, scores)
    if multi_label:
        auc = mean_auc(target, scores)
        return {"mAP": float(mean_average_precision(target, scores)["mAP"]),
                "mAUC": float(auc["mAUC"]), "d_prime": float(auc["d_prime"])}
    if not (target.sum(axis=1) == 1).all():
        raise ValueError("single-label target rows must be one-hot (drop padding rows before scoring)")
    return {"accuracy": accuracy(np.argmax(target, axis=1), scores),
            "mAP": float(mean_average_precision(target, scores)["mAP"])}


# ----------------------------------------------------------------------------------------------
# DESED: AudioSet frame maps -> 10 DESED classes
# ----------------------------------------------------------------------------------------------

# Same spelling and order as the DESED TSVs and tfds_builders/desed (alphabetical).
DESED_CLASSES: tuple[str, ...] = (
    "Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog",
    "Electric_shaver_toothbrush", "Frying", "Running_water", "Speech", "Vacuum_cleaner",
)

# AudioSet class indices (class_labels_indices.csv) pooled into each DESED class, aligned with
# DESED_CLASSES; from the official config.fl_audioset_mapping. The groups are disjoint.
DESED_AUDIOSET_INDICES: tuple[tuple[int, ...], ...] = (
    (310, *range(388, 403)),   # Alarm_bell_ringing: Car alarm, Alarm ... Whistle
    (369,),                    # Blender
    tuple(range(81, 86)),      # Cat: Cat, Purr, Meow, Hiss, Caterwaul
    (364,),                    # Dishes: Dishes, pots, and pans
    tuple(range(74, 80)),      # Dog ... Whimper (dog)
    (382,),                    # Electric_shaver_toothbrush: Electric shaver
    (366, 367, 368),           # Frying: Chopping (food), Frying (food), Microwave oven
    tuple(range(288, 298)),    # Running_water: Water ... Gurgling
    tuple(range(0, 8)),        # Speech ... Speech synthesizer
    (377,),                    # Vacuum_cleaner
)

# Per-class activation thresholds of the official TSCAM evaluation (fl_evaluate.fl_mapping),
# aligned with DESED_CLASSES. They look tuned on the DESED eval set itself (spec: [UNVERIFIED]).
DESED_THRESHOLDS: tuple[float, ...] = (0.18, 0.48, 0.51, 0.20, 0.39, 0.20, 0.20, 0.23, 0.275, 0.14)


# ----------------------------------------------------------------------------------------------
# Event detection: intersection-based F1 (psds_eval's compute_macro_f_score)
# ----------------------------------------------------------------------------------------------

EventsByFile = Mapping[str, Sequence[Event]]


def events_from_arrays(onsets: Sequence[float], offsets: Sequence[float], labels: Sequence[int],
                       class_names: Sequence[str]) -> list[Event]:
    """Ground-truth events from the tfds ``events`` feature (onset/offset seconds, class index).

    ``score`` is set to 1.0; it is ignored by :func:`event_f1`.
    """
    return [Event(class_names[int(lab)], float(on), float(off), 1.0)
            for on, off, lab in zip(np.asarray(onsets), np.asarray(offsets), np.asarray(labels))]


def _intervals(events: Sequence[Event], class_names: Sequence[str], what: str, filename: str
               ) -> dict[str, np.ndarray]:
    """Per-class ``(K, 2)`` [onset, offset] arrays, sorted, zero-length events dropped and
    same-class overlaps merged."""
    per_class: dict[str, list[tuple[float, float]]] = {c: [] for c in class_names}
    for ev in events:
        if ev.label not in per_class:
            raise ValueError(f"{what} event in {filename!r} has label {ev.label!r}, "
                             f"not one of {list(class_names)}")
        on, off = float(ev.onset_s), float(ev.offset_s)
        if not (math.isfinite(on) and math.isfinite(off)) or on > off:
            raise ValueError(f"{what} event in {filename!r} needs finite onset <= offset, got {ev}")
        if off > on:  # psds_eval drops zero-length events
            per_class[ev.label].append((on, off))
    out = {}
    for c, spans in per_class.items():
        spans.sort()
        merged: list[list[float]] = []
        for on, off in spans:
            # psds_eval rejects same-class events that overlap (touching is fine); synthetic scenes
            # can contain such pairs, so they are merged into one region instead.
            if merged and on < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], off)
            else:
                merged.append([on, off])
        out[c] = np.asarray(merged, dtype=np.float64).reshape(-1, 2)
    return out


def _intersections(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(D, G)`` overlap durations in seconds; 0 where the intervals do not strictly overlap."""
    inter = np.minimum(det[:, None, 1], gt[None, :, 1]) - np.maximum(det[:, None, 0], gt[None, :, 0])
    return np.maximum(inter, 0.0)


def event_f1(ground_truth: EventsByFile, detections: EventsByFile, durations: Mapping[str, float], *,
             class_names: Sequence[str], dtc: float = 0.5, gtc: float = 0.5, cttc: float = 0.3,
             beta: float = 1.0, nan_for_zero_tp: bool = False) -> dict[str, Any]:
    """Intersection-based event F-score, as ``psds_eval.PSDSEval(dtc, gtc, cttc)``'s
    ``compute_macro_f_score(detections, beta)``.

    Events are matched per file and per class; a detection and a ground-truth (GT) event intersect
    when they strictly overlap in time (touching does not count).

    * **DTC** (detection tolerance): a detection is *accepted* when the summed fraction of its
      duration that overlaps GT events of its class is ``>= dtc``.
    * **GTC** (ground-truth coverage): a GT event is a **true positive** when the summed fraction of
      its duration covered by *accepted* detections of its class is ``>= gtc``. Every other GT event
      is a **false negative**.
    * **False positive**: a detection that is not accepted (and lies at least partly inside
      ``[0, duration]`` of its file, psds_eval's implicit "world" event). An accepted detection
      whose GT events miss the GTC is neither TP nor FP.
    * **Cross-trigger** (reported, not part of F): a rejected detection whose summed overlap with
      GT events of *another* class is ``>= cttc`` of its duration, counted once per other class.
    * ``F = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)`` per class; macro F is the mean over the
      classes where F is defined (NaN only when a class has no GT and no detections).

    Differences from psds_eval 0.5.3, none of which affect valid DESED inputs with TP > 0 per class:
    a class with zero TP gets F = 0 here (psds_eval: NaN, dropped from the macro mean; set
    ``nan_for_zero_tp=True`` to reproduce that); same-class overlapping events are merged (psds_eval
    raises); unknown labels and files missing from ``durations`` raise (psds_eval ignores them).

    Args:
      ground_truth: filename -> GT events (``Event.score`` ignored). Files without events may be
        omitted or map to ``[]``.
      detections: filename -> detected events, e.g. from ``events.framewise_to_events``.
      durations: filename -> audio length in seconds, for every file in either mapping (the
        official DESED meta TSV uses ``real_len / sample_rate``).
      class_names: the classes to score; every event label must be one of them.
      dtc, gtc, cttc: the psds_eval criteria (official DESED evaluation: 0.5, 0.5, 0.3).
      beta: F-beta weight on recall (1 = F1).
      nan_for_zero_tp: reproduce psds_eval's NaN for classes without a true positive.

    Returns:
      ``{"macro_f1": float, "f1": {class: float}, "tp": {class: int}, "fp": {class: int},
      "fn": {class: int}, "cross_triggers": {class: int}}``.
    """
    for name, value in (("dtc", dtc), ("gtc", gtc), ("cttc", cttc)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"duplicate class names in {class_names}")
    missing = (set(ground_truth) | set(detections)) - set(durations)
    if missing:
        raise ValueError(f"no duration for files {sorted(missing)[:5]} ({len(missing)} in all)")

    tp = dict.fromkeys(class_names, 0)
    fp = dict.fromkeys(class_names, 0)
    fn = dict.fromkeys(class_names, 0)
    ct = dict.fromkeys(class_names, 0)
    for filename in sorted(set(ground_truth) | set(detections)):
        duration = float(durations[filename])
        gt = _intervals(ground_truth.get(filename, ()), class_names, "ground-truth", filename)
        det = _intervals(detections.get(filename, ()), class_names, "detected", filename)
        for c in class_names:
            d, g = det[c], gt[c]
            inter = _intersections(d, g)
            # DTC: fraction of each detection that lies on same-class GT.
            det_precision = (inter / (d[:, 1] - d[:, 0])[:, None]).sum(axis=1)
            accepted = (inter > 0).any(axis=1) & (det_precision >= dtc)
            # GTC: fraction of each GT event covered by accepted detections only.
            inter_acc = inter[accepted]
            gt_coverage = (inter_acc / (g[:, 1] - g[:, 0])[None, :]).sum(axis=0)
            hit = (inter_acc > 0).any(axis=0) & (gt_coverage >= gtc)
            tp[c] += int(hit.sum())
            fn[c] += int((~hit).sum())
            rejected = d[~accepted]
            # Rejected detections are FPs through psds_eval's whole-file "world" GT event, which
            # they must intersect (strictly) to be counted.
            fp[c] += int(((rejected[:, 0] < duration) & (rejected[:, 1] > 0.0)).sum())
            if rejected.size:
                lengths = rejected[:, 1] - rejected[:, 0]
                for other in class_names:
                    if other == c or not gt[other].size:
                        continue
                    inter_o = _intersections(rejected, gt[other])
                    share = (inter_o / lengths[:, None]).sum(axis=1)
                    ct[c] += int(((inter_o > 0).any(axis=1) & (share >= cttc)).sum())

    k = 1.0 + beta ** 2
    f1 = {}
    for c in class_names:
        denominator = k * tp[c] + beta ** 2 * fn[c] + fp[c]
        if denominator == 0 or (nan_for_zero_tp and tp[c] == 0):
            f1[c] = math.nan
        else:
            f1[c] = k * tp[c] / denominator
    return {"macro_f1": _nanmean(np.array(list(f1.values()))), "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "cross_triggers": ct}


def clip_events_f1(framewise: np.ndarray | Sequence[np.ndarray], ground_truth: Sequence[Sequence[Event]],
                   seconds_per_step: float, class_names: Sequence[str], *,
                   thresholds: float | np.ndarray = 0.5,
                   durations: float | Sequence[float] | None = None,
                   dtc: float = 0.5, gtc: float = 0.5, cttc: float = 0.3,
                   nan_for_zero_tp: bool = False) -> dict[str, Any]:
    """Frame-wise probabilities of a batch of clips -> events -> :func:`event_f1`.

    What the trainer calls for synthetic_events / DESED evaluation. Each clip's frame map is
    thresholded (``events.framewise_to_events``: runs of steps strictly above the threshold, no
    smoothing, as the official DESED pipeline) and scored against that clip's GT events.

    Args:
      framewise: ``(N, T, C)`` probabilities, or a sequence of ``N`` ``(T_i, C)`` arrays.
      ground_truth: ``N`` lists of GT events (see :func:`events_from_arrays`).
      seconds_per_step: from ``events.step_seconds``.
      class_names: ``C`` names.
      thresholds: scalar or ``(C,)`` activation thresholds.
      durations: clip lengths in seconds (scalar or ``(N,)``); detections are clipped to them.
        Default: ``T_i * seconds_per_step``.
      dtc, gtc, cttc, nan_for_zero_tp: see :func:`event_f1`.

    Returns:
      :func:`event_f1`'s dict. Clips are named ``"clip_00000"``, ``"clip_00001"``, ...
    """
    if len(framewise) != len(ground_truth):
        raise ValueError(f"{len(framewise)} frame maps but {len(ground_truth)} ground-truth lists")
    n = len(framewise)
    if durations is None:
        lengths = [np.shape(f)[0] * seconds_per_step for f in framewise]
    else:
        lengths = list(np.broadcast_to(np.asarray(durations, np.float64), (n,)))
    names = [f"clip_{i:05d}" for i in range(n)]
    detections = {name: framewise_to_events(np.asarray(f), seconds_per_step, class_names,
                                             threshold=thresholds, max_seconds=float(length))
                  for name, f, length in zip(names, framewise, lengths)}
    return event_f1(dict(zip(names, ground_truth)), detections, dict(zip(names, map(float, lengths))),
                    class_names=class_names, dtc=dtc, gtc=gtc, cttc=cttc, nan_for_zero_tp=nan_for_zero_tp)
