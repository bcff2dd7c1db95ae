"""Frame-wise event maps -> timed events ``(label, onset_s, offset_s, score)``.

Where a model's frame steps sit in time is the model's own ``frame_seconds`` (``htsat_jax.models``):
HTS-AT's ``framewise_output`` has ``target_frames`` (1024) steps per window, not one per STFT hop,
so step ``k`` sits at ``k * (T - 1) / (target_frames - 1) * hop / sample_rate`` seconds (9.775 ms per
step for a 10 s clip, not 10 s / 1024 = 9.766 ms as the official DESED scripts assume).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np



@dataclasses.dataclass(frozen=True)
class Event:
    label: str
    onset_s: float
    offset_s: float
    score: float


def framewise_to_events(framewise: np.ndarray, seconds_per_step: float, class_names: Sequence[str], *,
                        threshold: float | np.ndarray = 0.5, max_seconds: float | None = None) -> list[Event]:
    """Runs of consecutive steps above ``threshold`` (scalar or per class) become events.

    Args:
      framewise: ``(steps, classes)`` probabilities of one clip.
      seconds_per_step: the model's ``frame_seconds``.
      class_names: ``classes`` names.
      threshold: activation threshold, a scalar or ``(classes,)``.
      max_seconds: clip offsets at the real audio length.

    Returns:
      events sorted by onset; score = the mean probability inside the event.
    """
    steps, classes = framewise.shape
    active = framewise > np.broadcast_to(np.asarray(threshold, np.float64), (classes,))[None, :]
    padded = np.pad(active, ((1, 1), (0, 0)))
    edges = np.diff(padded.astype(np.int8), axis=0)
    events = []
    for c in range(classes):
        starts, ends = np.flatnonzero(edges[:, c] == 1), np.flatnonzero(edges[:, c] == -1)
        for s, e in zip(starts, ends):
            onset, offset = s * seconds_per_step, e * seconds_per_step
            if max_seconds is not None:
                offset = min(offset, max_seconds)
                if onset >= offset:
                    continue
            events.append(Event(class_names[c], round(float(onset), 4), round(float(offset), 4),
                                float(framewise[s:e, c].mean())))
    return sorted(events, key=lambda ev: (ev.onset_s, ev.label))


# HTS-AT frame maps are piecewise constant over blocks of target_frames / head_time_steps steps
# (32 steps = 0.31 s for a 10 s window): a median filter shorter than ~0.63 s (two blocks) leaves
# a single window's map unchanged and only cleans the sub-block fragments that averaging
# overlapping windows creates. Measurements behind the default: htsat_jax/predict.py docstring.
DEFAULT_MEDIAN_FILTER_S = 0.5


def median_filter_size(seconds: float, seconds_per_frame: float) -> int:
    """A median filter length in seconds -> an odd number of frames (1 = no filtering)."""
    if seconds is None or seconds <= 0:
        return 1
    size = max(1, int(round(seconds / seconds_per_frame)))
    return size if size % 2 else size + 1


def median_filter(framewise: np.ndarray, size: int) -> np.ndarray:
    """Median over ``size`` frames along time, per class (``(frames, classes)``; edges repeat)."""
    if size <= 1:
        return framewise
    from scipy import ndimage

    return ndimage.median_filter(framewise, size=(size, 1), mode="nearest")


def detect_events(framewise: np.ndarray, seconds_per_step: float, class_names: Sequence[str], *,
                  threshold: float | np.ndarray = 0.5, median_filter_s: float = DEFAULT_MEDIAN_FILTER_S,
                  max_seconds: float | None = None) -> list[Event]:
    """:func:`median_filter` (``median_filter_s`` converted to steps) then :func:`framewise_to_events`."""
    size = median_filter_size(median_filter_s, seconds_per_step)
    if size > 1:
        # A median never exceeds the maximum: only classes that reach the threshold somewhere can
        # have events, so only those are filtered (hour-long files x 527 classes stay fast).
        thr = np.broadcast_to(np.asarray(threshold, np.float64), (framewise.shape[1],))
        live = np.flatnonzero(framewise.max(axis=0) > thr)
        filtered = np.zeros_like(framewise)
        filtered[:, live] = median_filter(framewise[:, live], size)
        framewise = filtered
    return framewise_to_events(framewise, seconds_per_step, class_names, threshold=threshold,
                               max_seconds=max_seconds)
