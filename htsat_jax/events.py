"""Frame-wise event maps -> timed events ``(label, onset_s, offset_s, score)``.

The model's ``framewise_output`` has ``target_frames`` (1024) steps per window, not one per STFT
hop: the log-mel frames are stretched onto that grid before the backbone. Step ``k`` therefore
sits at STFT frame ``k * (T - 1) / (target_frames - 1)`` of the ``T`` frames that were stretched,
i.e. at ``k * (T - 1) / (target_frames - 1) * hop / sample_rate`` seconds (9.775 ms per step for
a 10 s clip, not 10 s / 1024 = 9.766 ms as the official DESED scripts assume).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from htsat_jax.models.htsat import HTSATConfig


@dataclasses.dataclass(frozen=True)
class Event:
    label: str
    onset_s: float
    offset_s: float
    score: float


def step_seconds(config: HTSATConfig, num_samples: int) -> float:
    """Seconds between consecutive framewise steps for an input of ``num_samples`` (no tiling)."""
    frames = config.frontend.num_frames(num_samples)
    return (frames - 1) / (config.target_frames - 1) * config.frontend.hop_length / config.frontend.sample_rate


def framewise_to_events(framewise: np.ndarray, seconds_per_step: float, class_names: Sequence[str], *,
                        threshold: float | np.ndarray = 0.5, max_seconds: float | None = None) -> list[Event]:
    """Runs of consecutive steps above ``threshold`` (scalar or per class) become events.

    Args:
      framewise: ``(steps, classes)`` probabilities of one clip.
      seconds_per_step: from :func:`step_seconds`.
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
            events.append(Event(class_names[c], round(onset, 4), round(offset, 4), float(framewise[s:e, c].mean())))
    return sorted(events, key=lambda ev: (ev.onset_s, ev.label))
