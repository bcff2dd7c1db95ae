"""PSDS of frame-wise event maps via ``sed_scores_eval`` (the DCASE task 4 scorer).

The Polyphonic Sound Detection Score (Bilen et al., ICASSP 2020) is threshold-independent: it
integrates the PSD-ROC (effective true-positive rate over effective false-positive rate per hour)
over all decision thresholds. It is not re-implemented here; :func:`psds` turns our frame maps into
``sed_scores_eval`` score tables and calls ``sed_scores_eval.intersection_based.psds`` (exact
PSD-ROC, Ebbers et al., ICASSP 2022), the scorer of the DCASE task 4 baselines.

The time axis follows ``events.framewise_to_events``: step ``k`` covers
``[k * seconds_per_step, (k + 1) * seconds_per_step)`` (times rounded to 0.1 ms), and steps that
start at or after the clip's duration are dropped, the last kept step ending at the duration.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

# The two DCASE 2021-2024 task 4 (DESED) evaluation scenarios. Scenario 1 rewards precise
# localisation (no cross-trigger criterion), scenario 2 class confusion avoidance.
PSDS_SCENARIOS: dict[int, dict[str, Any]] = {
    1: dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0,
            max_efpr=100.0),
    2: dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0,
            max_efpr=100.0),
}


def _import_scorer():
    # sed_scores_eval imports sed_eval -> dcase_util, which warns about pkg_resources on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sed_scores_eval import intersection_based
        from sed_scores_eval.base_modules.scores import create_score_dataframe
    return intersection_based, create_score_dataframe


def clip_names(n: int) -> list[str]:
    """The clip ids :func:`psds` gives its ``n`` clips (as ``metrics.clip_events_f1`` does)."""
    return [f"clip_{i:05d}" for i in range(n)]


def score_tables(framewise: np.ndarray | Sequence[np.ndarray], seconds_per_step: float,
                 class_names: Sequence[str], durations: Sequence[float]) -> dict[str, Any]:
    """Frame maps -> ``{clip id: sed_scores_eval score DataFrame}`` (see the module docstring)."""
    _, create_score_dataframe = _import_scorer()
    tables = {}
    for name, frames, duration in zip(clip_names(len(framewise)), framewise, durations):
        frames = np.asarray(frames, np.float64)
        if frames.ndim != 2 or frames.shape[1] != len(class_names):
            raise ValueError(f"{name}: frame map of shape {frames.shape}, expected (steps, {len(class_names)})")
        starts = np.round(np.arange(frames.shape[0]) * seconds_per_step, 4)
        keep = int(np.count_nonzero(starts < duration))
        if keep == 0:
            raise ValueError(f"{name}: no step starts before its duration {duration} s")
        timestamps = np.append(starts[:keep], float(duration))
        tables[name] = create_score_dataframe(frames[:keep], timestamps, list(class_names))
    return tables


def ground_truth_tuples(events: Sequence[Any], class_names: Sequence[str], what: str = "clip"
                        ) -> list[tuple[float, float, str]]:
    """Event objects (``.label``, ``.onset_s``, ``.offset_s``) -> ``(onset, offset, label)``.

    Zero-length events are dropped. Same-class events that overlap *or touch* are merged into one:
    ``sed_scores_eval`` rejects both (``metrics.event_f1`` merges only overlapping ones).
    """
    per_class: dict[str, list[list[float]]] = {c: [] for c in class_names}
    for ev in events:
        if ev.label not in per_class:
            raise ValueError(f"{what}: ground-truth label {ev.label!r} is not one of {list(class_names)}")
        on, off = float(ev.onset_s), float(ev.offset_s)
        if not (np.isfinite(on) and np.isfinite(off)) or on > off:
            raise ValueError(f"{what}: ground-truth event needs finite onset <= offset, got {ev}")
        if off > on:
            per_class[ev.label].append([on, off])
    out = []
    for label, spans in per_class.items():
        merged: list[list[float]] = []
        for on, off in sorted(spans):
            if merged and on <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], off)
            else:
                merged.append([on, off])
        out += [(on, off, label) for on, off in merged]
    return sorted(out)


def psds(framewise: np.ndarray | Sequence[np.ndarray], ground_truth: Sequence[Sequence[Any]],
         seconds_per_step: float, class_names: Sequence[str], *, scenario: int = 1,
         durations: float | Sequence[float] | None = None, **overrides: Any) -> dict[str, Any]:
    """Polyphonic Sound Detection Score of per-clip frame-wise score maps.

    Args:
      framewise: ``(N, T, C)`` scores (probabilities), or a sequence of ``N`` ``(T_i, C)`` arrays:
        the model's ``framewise_output`` per clip, after any post-processing (clip gating, median
        filter). Every distinct score value is a decision threshold of the PSD-ROC.
      ground_truth: ``N`` sequences of ground-truth events, objects with ``label`` (one of
        ``class_names``), ``onset_s`` and ``offset_s`` (``events.Event``, e.g. from
        ``metrics.events_from_arrays``); see :func:`ground_truth_tuples` for merging. Every class
        needs at least one event in the whole set (the scorer's recall is undefined otherwise).
      seconds_per_step: seconds between frame-map steps (the model's ``frame_seconds``).
      class_names: the ``C`` class names, in frame-map column order.
      scenario: ``1`` or ``2``, the DCASE criteria in :data:`PSDS_SCENARIOS`.
      durations: clip lengths in seconds, scalar or ``(N,)``; the eFPR is per hour of this audio.
        Default ``T_i * seconds_per_step``.
      **overrides: replace scenario entries (``dtc_threshold``, ``gtc_threshold``,
        ``cttc_threshold``, ``alpha_ct``, ``alpha_st``, ``max_efpr``) or pass other keyword
        arguments of ``sed_scores_eval.intersection_based.psds`` (``unit_of_time``, ``num_jobs``).

    Returns:
      ``{"psds": float, "per_class": {class: float}}``: the PSDS in [0, 1] (1 = every event found
      at eFPR 0 in every class) and the scorer's single-class PSDS values.
    """
    if scenario not in PSDS_SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(PSDS_SCENARIOS)}, got {scenario}")
    n = len(framewise)
    if len(ground_truth) != n:
        raise ValueError(f"{n} frame maps but {len(ground_truth)} ground-truth lists")
    class_names = list(class_names)
    if durations is None:
        lengths = [np.shape(f)[0] * seconds_per_step for f in framewise]
    else:
        lengths = [float(d) for d in np.broadcast_to(np.asarray(durations, np.float64), (n,))]
    names = clip_names(n)
    gt = {name: ground_truth_tuples(events, class_names, name) for name, events in zip(names, ground_truth)}
    missing = sorted(set(class_names) - {label for events in gt.values() for _, _, label in events})
    if missing:
        raise ValueError(f"classes without any ground-truth event: {missing} (PSDS is undefined for them)")
    intersection_based, _ = _import_scorer()
    value, per_class, _, _ = intersection_based.psds(
        scores=score_tables(framewise, seconds_per_step, class_names, lengths), ground_truth=gt,
        audio_durations=dict(zip(names, lengths)), **{**PSDS_SCENARIOS[scenario], **overrides})
    return {"psds": float(value), "per_class": {c: float(per_class[c]) for c in class_names}}
