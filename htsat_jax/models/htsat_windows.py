r"""Audio of any length -> fixed-shape model windows -> outputs stitched on a real time axis.

Everything the file-level inference (``AudioTagger.analyse``, ``tag_file``, ``events``, ``embed``
and ``python -m htsat_jax.inference.predict``) does to cut, batch and re-assemble audio lives here, as
plain numpy so it can be tested without a model.

Windows. A recording of ``L`` samples (at the model rate) becomes

* one window of the whole recording when ``L <= window`` (10 s by default). The model sees it the
  way the official ``infer_mode`` does: its log-mel frames tiled ``R = target_frames // T`` times
  (``T = 1 + L // hop_length``), then bicubic-stretched to ``target_frames``; exactly 10 s is
  ``R = 1`` and equals the official eval forward;
* otherwise windows of ``window`` samples starting at ``0, hop, 2 * hop, ...`` plus one final
  window ending at the recording's end (its start rounded down to a whole STFT hop), so every
  sample is seen and every window has the same shape.

Fixed shapes. A window's log-mel is computed from a buffer of ``window + n_fft // 2`` samples:
the window, then its own reflected tail (what the frontend's ``center=True`` reflect padding
would append), then zeros. The first ``T`` frames of that buffer's log-mel are exactly the
window's own frames, whatever its length; the stretch (and the tiling) is a gather of at most
four frames per output step with bicubic weights (:func:`stretch_taps`). So windows of different
files and lengths share one compiled program and one batch.

Time axis. Step ``k`` of a window's ``target_frames``-step frame map sits at stretched position
``k``, i.e. at frame ``k * (R*T - 1) / (target_frames - 1)`` of the tiled log-mel (the
``events.step_seconds`` mapping), which is frame ``(that) mod T`` of the window. Every window is
mapped back onto its own ``T`` STFT frames (nearest step, copies of a tiled window averaged), and
frames are placed on one grid for the whole recording: frame ``g`` at ``g * hop_length /
sample_rate`` seconds (10 ms for the AudioSet frontend), with ``1 + L // hop_length`` frames.
Where windows overlap the frame values are averaged.
"""

from __future__ import annotations

import dataclasses
import functools


import numpy as np

from htsat_jax.inference import windowing
from htsat_jax.models.htsat import HTSATConfig, bicubic_matrix, to_image
from htsat_jax.models import frontend as frontend_lib

# Taps per stretched step: bicubic needs four source frames (fewer after clamping / tiling).
NUM_TAPS = 4


@dataclasses.dataclass(frozen=True)
class WindowSpec(windowing.Windows):
    """How HTS-AT cuts recordings, in samples at the model rate (see the module docstring)."""

    window: int          # samples per window; recordings up to this long are one (tiled) window
    hop: int             # samples between window starts, a multiple of ``hop_length``
    hop_length: int      # STFT hop of the model's frontend
    n_fft: int
    target_frames: int   # frames the model stretches every window to (1024)
    sample_rate: int
    config: HTSATConfig | None = None

    @classmethod
    def from_seconds(cls, config: HTSATConfig, window_s: float = 10.0, hop_s: float = 5.0) -> "WindowSpec":
        fe = config.frontend
        window = int(round(window_s * fe.sample_rate))
        longest = config.target_frames * fe.hop_length - 1  # 1 + window // hop_length <= target_frames
        if window <= fe.n_fft // 2:
            raise ValueError(f"window_s={window_s} is too short; the frontend needs more than "
                             f"{fe.n_fft // 2 / fe.sample_rate * 1000:.0f} ms")
        if window > longest:
            raise ValueError(f"window_s={window_s} is longer than the model's input "
                             f"({longest / fe.sample_rate:.2f} s = {config.target_frames} frames); "
                             f"use a window of at most {longest / fe.sample_rate:.2f} s")
        if not hop_s > 0:
            raise ValueError(f"hop_s must be positive, got {hop_s}")
        hop = max(1, int(round(hop_s * fe.sample_rate / fe.hop_length))) * fe.hop_length
        if hop > window:
            raise ValueError(f"hop_s={hop_s} is longer than window_s={window_s}: audio between windows "
                             "would never be seen")
        return cls(window, hop, fe.hop_length, fe.n_fft, config.target_frames, fe.sample_rate, config)

    @property
    def buffer_samples(self) -> int:
        """Length of every model input buffer (window + reflected tail room)."""
        return self.window + self.n_fft // 2

    @property
    def frame_hop(self) -> int:
        """The stitched grid is the STFT frame grid."""
        return self.hop_length

    @property
    def min_samples(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    # ---- the Windows contract (htsat_jax.inference.windowing.Windows)

    def prepare(self, segment: np.ndarray) -> dict[str, np.ndarray]:
        taps, weights = stretch_taps(self.num_frames(segment.shape[0]), self.target_frames)
        return {"buffer": self.buffer(segment), "taps": taps, "weights": weights}

    def forward(self, model, inputs) -> dict:
        """Log-mel of each buffer, bn0, the tile + stretch as a gather, backbone and head."""
        import jax.numpy as jnp

        buffers, taps, weights = inputs["buffer"], inputs["taps"], inputs["weights"]
        logmel = frontend_lib.log_mel(buffers, self.config.frontend)
        x = model.normalise(logmel, train=False)
        rows = jnp.arange(x.shape[0])[:, None, None]
        stretched = jnp.sum(x[rows, taps] * weights[..., None], axis=2)  # (B, target, mels)
        capture = {}
        out = model.forward_image(to_image(stretched, self.config.freq_ratio), capture=capture)
        out["frame_features"] = jnp.mean(capture["tscam_conv_in"], axis=1)  # (B, steps, C)
        return out

    def local_frames(self, framewise: np.ndarray, segment_samples: int) -> np.ndarray:
        return window_frames(framewise, self.num_frames(segment_samples))

    def tiled(self, segment_samples: int) -> int:
        return self.target_frames // self.num_frames(min(segment_samples, self.window))

    def feature_intervals(self, segment_samples: int, steps: int) -> np.ndarray:
        return step_intervals(self.num_frames(min(segment_samples, self.window)), self.target_frames, steps)

    def short_note(self, segment_samples: int) -> str | None:
        copies = self.tiled(segment_samples)
        if copies > 1:
            return (f"shorter than the {self.window / self.sample_rate:g} s window: log-mel tiled {copies}x as the "
                    "official inference does")
        return None

    def buffer(self, segment: np.ndarray) -> np.ndarray:
        """A window's samples -> the fixed-length model buffer (see the module docstring)."""
        n, pad = segment.shape[0], self.n_fft // 2
        if n <= pad:
            raise ValueError(f"{n} samples; the frontend needs more than {pad}")
        out = np.zeros(self.buffer_samples, np.float32)
        out[:n] = segment
        out[n:n + pad] = segment[::-1][1:pad + 1]  # numpy/jnp "reflect": x[n-2], x[n-3], ...
        return out


@functools.lru_cache(maxsize=64)
def stretch_taps(frames: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """The official infer-mode tile + bicubic stretch of ``frames`` frames to ``target`` as a gather.

    Returns:
      ``idx (target, 4) int32`` source frames in ``[0, frames)`` and ``weights (target, 4) float32``
      with ``stretched[o] = sum_k weights[o, k] * logmel[idx[o, k]]``; equals
      ``stretch_time(tile(logmel, target // frames), target)`` (identity when ``frames == target``).
    """
    if not 1 < frames <= target:
        raise ValueError(f"cannot stretch {frames} frames to {target}")
    tiled = (target // frames) * frames
    matrix = bicubic_matrix(tiled, target, "float32")  # (target, tiled)
    idx = np.zeros((target, NUM_TAPS), np.int32)
    weights = np.zeros((target, NUM_TAPS), np.float32)
    for o in range(target):
        cols = np.flatnonzero(matrix[o])
        folded: dict[int, float] = {}
        for c in cols:
            folded[int(c) % frames] = folded.get(int(c) % frames, 0.0) + float(matrix[o, c])
        for k, (c, w) in enumerate(sorted(folded.items())):
            idx[o, k], weights[o, k] = c, w
    return idx, weights


@functools.lru_cache(maxsize=64)
def frame_steps(frames: int, target: int) -> np.ndarray:
    """``(frames, R)``: for each of a window's STFT frames, the nearest framewise step in each copy.

    ``R = target // frames`` copies of the frames were stretched to ``target`` steps (R = 1 for a
    full 10 s window); frame ``j`` of copy ``c`` sits at step ``(c * frames + j) * (target - 1) /
    (R * frames - 1)``.
    """
    copies = target // frames
    tiled = copies * frames
    pos = np.arange(tiled, dtype=np.float64) * (target - 1) / (tiled - 1)
    steps = np.clip(np.floor(pos + 0.5).astype(np.int64), 0, target - 1)
    return steps.reshape(copies, frames).T


def window_frames(framewise: np.ndarray, frames: int) -> np.ndarray:
    """A window's ``(target, classes)`` frame map -> ``(frames, classes)`` on its own STFT frames."""
    return framewise[frame_steps(frames, framewise.shape[0])].mean(axis=1)


def step_intervals(frames: int, target: int, steps: int) -> np.ndarray:
    """``(steps, 2)`` start/end, in STFT frames of the (tiled) window, of each token-semantic step.

    Head step ``i`` covers framewise steps ``[i * target/steps, (i + 1) * target/steps)``; the
    boundaries are mapped through ``k * (R*T - 1) / (target - 1)``. For a tiled window (R > 1) the
    positions run over the tiled input (past ``frames``).
    """
    tiled = (target // frames) * frames
    edges = np.minimum(np.arange(steps + 1) * (target // steps) * (tiled - 1) / (target - 1), tiled - 1)
    return np.stack([edges[:-1], edges[1:]], axis=1)
