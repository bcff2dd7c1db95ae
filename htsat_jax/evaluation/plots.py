"""PNG figures: a clip's log-mel spectrogram above the frame-wise event map of its top classes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from htsat_jax.inference.events import Event


def display_log_mel(waveform: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """``(frames, n_mels)`` dB log-mel for display (10 ms hop, whatever model made the frame map)."""
    import librosa

    hop = max(1, sample_rate // 100)
    mel = librosa.feature.melspectrogram(y=np.asarray(waveform, np.float32), sr=sample_rate,
                                         n_fft=4 * hop if 4 * hop >= 64 else 64, hop_length=hop,
                                         n_mels=n_mels, fmin=50.0, fmax=sample_rate / 2)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10).T


def plot_event_map(path: str, waveform: np.ndarray, sample_rate: int,
                   framewise: np.ndarray, seconds_per_step: float, class_names: Sequence[str], *,
                   truth: Sequence[Event] = (), detections: Sequence[Event] = (), top_k: int = 5,
                   title: str = "") -> None:
    """Write ``path``: log-mel (top), per-class probability rows of the ``top_k`` classes (bottom).

    Args:
      waveform: ``(samples,)`` float in [-1, 1] at ``sample_rate``.
      framewise: ``(steps, classes)`` probabilities; step ``k`` is at ``k * seconds_per_step``.
      truth / detections: events drawn as outlined (truth) and filled (detected) bars.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logmel = display_log_mel(waveform, sample_rate)
    seconds = waveform.shape[0] / sample_rate
    wanted = {e.label for e in truth} | {e.label for e in detections}
    order = list(np.argsort(-framewise.max(axis=0)))
    shown = [c for c in order if class_names[c] in wanted]
    shown += [c for c in order if c not in shown]
    shown = sorted(shown[:max(top_k, len(wanted))], key=lambda c: class_names[c])

    fig, (ax_spec, ax_map) = plt.subplots(2, 1, figsize=(10, 2.2 + 0.45 * len(shown)), sharex=True,
                                          gridspec_kw={"height_ratios": [2, max(1.0, 0.35 * len(shown))]})
    ax_spec.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, seconds, 0, logmel.shape[1]))
    ax_spec.set_ylabel("mel bin")
    if title:
        ax_spec.set_title(title)
    steps = framewise.shape[0]
    ax_map.imshow(framewise[:, shown].T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                  extent=(0, steps * seconds_per_step, -0.5, len(shown) - 0.5), interpolation="nearest")
    row = {class_names[c]: i for i, c in enumerate(shown)}
    for e in truth:
        if e.label in row:
            ax_map.add_patch(plt.Rectangle((e.onset_s, row[e.label] - 0.45), e.offset_s - e.onset_s, 0.9,
                                           fill=False, edgecolor="white", linewidth=1.5))
    for e in detections:
        if e.label in row:
            ax_map.plot([e.onset_s, e.offset_s], [row[e.label] - 0.3] * 2, color="red", linewidth=3)
    ax_map.set_yticks(range(len(shown)), [class_names[c] for c in shown])
    legend = ", ".join(part for part, shown_part in (("white boxes: true events", truth),
                                                     ("red bars: detected events", detections)) if shown_part)
    ax_map.set_xlabel("time (s)" + (f"   {legend}" if legend else ""))
    ax_map.set_xlim(0, seconds)
    fig.tight_layout()
    from htsat_jax.utils import paths
    with paths.path(path).open("wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
