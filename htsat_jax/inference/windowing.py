r"""Audio of any length -> fixed-shape model windows -> outputs stitched on one time axis.

Every model that has frame-level output describes how it runs on long audio with a
:class:`Windows` object (the ``windows`` part of the model contract, ``htsat_jax.models``):
where windows start, what fixed-shape arrays one window becomes (:meth:`Windows.prepare`), the
batched forward (:meth:`Windows.forward`), and how a window's frame map lands on the recording's
frame grid (:meth:`Windows.local_frames`). ``AudioTagger`` batches windows of many recordings
together and stitches them with a :class:`Stitcher`; none of this knows which model it runs.

:class:`PlainWindows` serves models with a fixed input length and an evenly spaced frame output
(the window is zero-padded, frames past the audio are dropped). HTS-AT has its own
(``htsat_jax.models.htsat_windows``: tiling and the bicubic stretch of the official inference).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

CLIP_POOLS = ("max", "mean")


class Windows:
    """How one model cuts, runs and re-assembles audio of any length (samples at the model rate).

    Attributes:
      sample_rate: the model's rate.
      window: samples per window; a recording up to this long is one window.
      hop: samples between window starts (a multiple of ``frame_hop``).
      frame_hop: samples per step of the stitched frame grid.
      min_samples: the shortest audio the model takes.
    """

    sample_rate: int
    window: int
    hop: int
    frame_hop: int
    min_samples: int = 1

    @property
    def seconds_per_frame(self) -> float:
        """Spacing of the stitched frame grid."""
        return self.frame_hop / self.sample_rate

    def _key(self) -> tuple:
        """What makes two windows the same (subclasses extend it): equal windows share the tagger's
        compiled program instead of compiling it again for every call."""
        return (self.sample_rate, self.window, self.hop, self.frame_hop, self.min_samples)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def num_frames(self, num_samples: int) -> int:
        """Frames of the grid for ``num_samples`` samples."""
        return max(1, math.ceil(num_samples / self.frame_hop))

    def starts(self, num_samples: int) -> list[int]:
        """Start samples of the windows: ``0, hop, 2 hop, ...`` plus one window ending at the end
        (its start rounded down to the frame grid), so every sample is seen."""
        if num_samples <= self.window:
            return [0]
        starts = list(range(0, num_samples - self.window + 1, self.hop))
        last = (num_samples - self.window) // self.frame_hop * self.frame_hop
        if last > starts[-1]:
            starts.append(last)
        return starts

    def prepare(self, segment: np.ndarray) -> dict[str, np.ndarray]:
        """A window's samples (at most ``window``) -> the fixed-shape arrays of one batch row."""
        raise NotImplementedError

    def forward(self, model: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Batched (jit-able) forward of stacked :meth:`prepare` rows: ``clipwise_output (B, C)``,
        ``framewise_output (B, T, C)``, ``latent_output (B, D)`` and, when the model has them,
        ``frame_features (B, S, D)``."""
        raise NotImplementedError

    def local_frames(self, framewise: np.ndarray, segment_samples: int) -> np.ndarray:
        """A window's ``(T, C)`` frame map -> ``(num_frames(segment_samples), C)`` on the grid."""
        raise NotImplementedError

    def tiled(self, segment_samples: int) -> int:
        """How many copies of a short recording the model saw (1: none)."""
        return 1

    def feature_intervals(self, segment_samples: int, steps: int) -> np.ndarray:
        """``(steps, 2)`` start/end, in grid frames of the window, of each ``frame_features`` row."""
        edges = np.linspace(0.0, self.num_frames(segment_samples), steps + 1)
        return np.stack([edges[:-1], edges[1:]], axis=1)

    def short_note(self, segment_samples: int) -> str | None:
        """What was done to a recording shorter than the window (for the file notes), or None."""
        return None


class PlainWindows(Windows):
    """Fixed-length windows, zero-padded, through the model's own inference forward.

    Args:
      infer: ``(model, waveform (B, window)) -> outputs`` with ``framewise_output (B, T, C)``
        whose steps are ``seconds_per_step`` apart from the window's start.
      sample_rate, window_s, hop_s: the windows (seconds; ``hop_s`` is rounded to whole steps).
      seconds_per_step: spacing of the model's frame output.
      min_samples: shortest audio the model takes.
    """

    def __init__(self, infer: Callable, *, sample_rate: int, window_s: float, hop_s: float,
                 seconds_per_step: float, min_samples: int = 1, max_window_s: float | None = None):
        if max_window_s is not None and window_s > max_window_s + 1e-9:
            raise ValueError(f"window_s={window_s} is longer than the model's input ({max_window_s:g} s)")
        if not hop_s > 0:
            raise ValueError(f"hop_s must be positive, got {hop_s}")
        if hop_s > window_s:
            raise ValueError(f"hop_s={hop_s} is longer than window_s={window_s}: audio between windows "
                             "would never be seen")
        self._infer = infer
        self.sample_rate = int(sample_rate)
        self.window = int(round(window_s * sample_rate))
        self.frame_hop = max(1, int(round(seconds_per_step * sample_rate)))
        self.hop = max(1, int(round(hop_s * sample_rate / self.frame_hop))) * self.frame_hop
        self.min_samples = int(min_samples)
        if self.window < self.min_samples:
            raise ValueError(f"window_s={window_s} is shorter than the model needs "
                             f"({self.min_samples / sample_rate:g} s)")

    def _key(self) -> tuple:
        return (self._infer, *super()._key())

    def prepare(self, segment: np.ndarray) -> dict[str, np.ndarray]:
        buffer = np.zeros(self.window, np.float32)
        buffer[:segment.shape[0]] = segment
        return {"waveform": buffer}

    def forward(self, model: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self._infer(model, inputs["waveform"])

    def local_frames(self, framewise: np.ndarray, segment_samples: int) -> np.ndarray:
        n = self.num_frames(segment_samples)
        if framewise.shape[0] < n:  # a model emitting fewer steps than the grid: repeat the last
            framewise = np.concatenate([framewise, np.repeat(framewise[-1:], n - framewise.shape[0], 0)])
        return framewise[:n]

    def short_note(self, segment_samples: int) -> str | None:
        if segment_samples < self.window:
            return f"shorter than the {self.window / self.sample_rate:g} s window: zero-padded"
        return None


class Stitcher:
    """Averages window frame maps on one recording-level frame grid."""

    def __init__(self, total_frames: int, channels: int):
        self.total = np.zeros((total_frames, channels), np.float32)
        self.count = np.zeros(total_frames, np.int32)

    def add(self, start_frame: int, values: np.ndarray) -> None:
        end = min(start_frame + values.shape[0], self.total.shape[0])
        self.total[start_frame:end] += values[:end - start_frame]
        self.count[start_frame:end] += 1

    def result(self) -> np.ndarray:
        """The averaged map; a frame no window covered takes its nearest covered neighbour."""
        covered = self.count > 0
        if not covered.any():
            raise ValueError("no window was added")
        out = self.total / np.maximum(self.count, 1)[:, None]
        if not covered.all():
            pos, at = np.flatnonzero(covered), np.arange(len(covered))
            right = pos[np.clip(np.searchsorted(pos, at), 0, len(pos) - 1)]
            left = pos[np.clip(np.searchsorted(pos, at) - 1, 0, len(pos) - 1)]
            out = out[np.where(np.abs(left - at) < np.abs(right - at), left, right)]
        return out




def pool_clip(window_scores: np.ndarray, how: str) -> np.ndarray:
    """``(windows, classes)`` -> ``(classes,)`` by max (default: "is it anywhere") or mean."""
    if how == "max":
        return window_scores.max(axis=0)
    if how == "mean":
        return window_scores.mean(axis=0)
    raise ValueError(f"clip_pool must be one of {CLIP_POOLS}, got {how!r}")
