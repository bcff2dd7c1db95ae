"""Procedurally generated sound-event scenes for the demo and the tests.

A scene is a mono clip (default 10 s at 32 kHz) holding a quiet noise floor and
1-4 sound events drawn from ten synthetic classes. Every event has an exact,
sample-aligned onset and offset and 10 ms raised-cosine fades. Parameters vary
within a class (frequency, rate, amplitude) but each class keeps a signature that
is easy to tell apart in a 64-bin log-mel spectrogram:

==================  ==========================================================
class               signature
==================  ==========================================================
pure_tone           one steady sinusoid, 300-900 Hz
rising_chirp        exponential sweep up, ~300-600 Hz -> 3-6 kHz
falling_chirp       exponential sweep down, 3-6 kHz -> ~300-600 Hz
noise_burst         white noise (flat, broadband; centroid ~ sample_rate/4)
click_train         8-25 short decaying broadband clicks per second
harmonic_stack      f0 100-250 Hz with harmonics (1/k amplitudes) up to 4 kHz
am_tone             1-2 kHz carrier with 4-8 Hz, 90 % deep tremolo
low_rumble          noise band-limited to 20-200 Hz
fm_warble           2.5-4.5 kHz carrier, +-10 % vibrato at 5-10 Hz
dual_tone           DTMF pair: one of 697-941 Hz plus one of 1209-1633 Hz
==================  ==========================================================

Everything is deterministic given a seed (``numpy.random.Generator``), and
``make_scenes`` derives one independent stream per scene index, so scene ``i``
is the same whatever the number of scenes requested.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Callable, Union

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "pure_tone",
    "rising_chirp",
    "falling_chirp",
    "noise_burst",
    "click_train",
    "harmonic_stack",
    "am_tone",
    "low_rumble",
    "fm_warble",
    "dual_tone",
)
NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_SAMPLE_RATE = 32000
DEFAULT_DURATION_S = 10.0

FADE_S = 0.010  # length of each raised-cosine fade at an event's edges
NOISE_FLOOR_RMS = 0.003  # about -50 dBFS: audible "room" without masking events
MIN_EVENT_S = 0.4
MAX_EVENT_S = 3.0
MIN_EVENTS, MAX_EVENTS = 1, 4
# Loudness of one event: RMS drawn from this range, then scaled down if its peak
# would exceed MAX_PEAK (impulsive classes). Overlapping loud events can still
# sum past 1.0 and are clipped in ``make_scene``.
MIN_RMS, MAX_RMS = 0.05, 0.12
MAX_PEAK = 0.6

Event = tuple[float, float, int]  # (onset_s, offset_s, class_index)
RngOrSeed = Union[int, np.random.Generator, np.random.SeedSequence, Sequence[int]]


def _as_rng(rng_or_seed: RngOrSeed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def _tone(freq: float, t: np.ndarray, phase: float) -> np.ndarray:
    return np.sin(2.0 * np.pi * freq * t + phase)


def _exp_sweep(f_start: float, f_end: float, t: np.ndarray, phase: float) -> np.ndarray:
    # Instantaneous frequency f_start * k**(t/T); the phase is its integral.
    duration = max(float(t[-1]), 1e-6)
    k = f_end / f_start
    inst_phase = 2.0 * np.pi * f_start * duration / np.log(k) * (k ** (t / duration) - 1.0)
    return np.sin(inst_phase + phase)


def _band_noise(rng: np.random.Generator, n: int, sample_rate: int, lo_hz: float,
                hi_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs < lo_hz) | (freqs > hi_hz)] = 0.0
    return np.fft.irfft(spectrum, n)


def _pure_tone(rng, t, sample_rate):
    return _tone(rng.uniform(300.0, 900.0), t, rng.uniform(0, 2 * np.pi))


def _rising_chirp(rng, t, sample_rate):
    return _exp_sweep(rng.uniform(300.0, 600.0), rng.uniform(3000.0, 6000.0), t,
                      rng.uniform(0, 2 * np.pi))


def _falling_chirp(rng, t, sample_rate):
    return _exp_sweep(rng.uniform(3000.0, 6000.0), rng.uniform(300.0, 600.0), t,
                      rng.uniform(0, 2 * np.pi))


def _noise_burst(rng, t, sample_rate):
    return rng.standard_normal(t.shape[0])


def _click_train(rng, t, sample_rate):
    n = t.shape[0]
    rate = rng.uniform(8.0, 25.0)
    click_len = max(int(0.008 * sample_rate), 4)
    # A click is a few ms of noise with a fast exponential decay: broadband and
    # short, so it shows up as a vertical line in every mel bin.
    decay = np.exp(-np.arange(click_len) / (0.002 * sample_rate))
    out = np.zeros(n)
    start = rng.uniform(0.0, 1.0 / rate)
    times = np.arange(start, n / sample_rate, 1.0 / rate)
    times = times + rng.uniform(-0.1, 0.1, size=times.shape) / rate
    for pos in np.clip((times * sample_rate).astype(np.int64), 0, n - 1):
        seg = out[pos:pos + click_len]
        seg += rng.standard_normal(seg.shape[0]) * decay[:seg.shape[0]]
    return out


def _harmonic_stack(rng, t, sample_rate):
    f0 = rng.uniform(100.0, 250.0)
    num_harmonics = int(min(4000.0, 0.45 * sample_rate) // f0)
    k = np.arange(1, num_harmonics + 1)
    phases = rng.uniform(0, 2 * np.pi, size=num_harmonics)
    # The waveform is periodic in 1/f0: tabulate one period (sum of sines with
    # 1/k amplitudes) and read it with the running phase, which is ~20x cheaper
    # than summing every harmonic at every sample.
    table_size = 4096
    grid = np.arange(table_size + 1) / table_size
    table = (np.sin(2.0 * np.pi * np.outer(grid, k) + phases) / k).sum(axis=1)
    cycle_pos = np.mod(f0 * t, 1.0) * table_size
    return np.interp(cycle_pos, np.arange(table_size + 1), table)


def _am_tone(rng, t, sample_rate):
    carrier = _tone(rng.uniform(1000.0, 2000.0), t, rng.uniform(0, 2 * np.pi))
    rate, depth = rng.uniform(4.0, 8.0), 0.9
    envelope = 1.0 - depth * 0.5 * (1.0 - np.cos(2.0 * np.pi * rate * t))
    return carrier * envelope


def _low_rumble(rng, t, sample_rate):
    return _band_noise(rng, t.shape[0], sample_rate, 20.0, 200.0)


def _fm_warble(rng, t, sample_rate):
    carrier = rng.uniform(2500.0, 4500.0)
    rate = rng.uniform(5.0, 10.0)
    deviation = 0.1 * carrier
    phase = 2.0 * np.pi * carrier * t + (deviation / rate) * np.sin(2.0 * np.pi * rate * t)
    return np.sin(phase + rng.uniform(0, 2 * np.pi))


_DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
_DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)


def _dual_tone(rng, t, sample_rate):
    low, high = rng.choice(_DTMF_LOW), rng.choice(_DTMF_HIGH)
    return (_tone(low, t, rng.uniform(0, 2 * np.pi)) +
            _tone(high, t, rng.uniform(0, 2 * np.pi)))


_RENDERERS: tuple[Callable[[np.random.Generator, np.ndarray, int], np.ndarray], ...] = (
    _pure_tone, _rising_chirp, _falling_chirp, _noise_burst, _click_train,
    _harmonic_stack, _am_tone, _low_rumble, _fm_warble, _dual_tone)
assert len(_RENDERERS) == NUM_CLASSES


def _fade_in_out(x: np.ndarray, fade_samples: int) -> np.ndarray:
    fade = min(fade_samples, x.shape[0] // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= ramp
        x[x.shape[0] - fade:] *= ramp[::-1]
    return x


def render_event(class_index: int, rng_or_seed: RngOrSeed, num_samples: int,
                 sample_rate: int = DEFAULT_SAMPLE_RATE,
                 rms: float | None = None) -> np.ndarray:
    """Renders one event of a class, with fades, as float32 (num_samples,).

    Args:
        class_index: index into ``CLASS_NAMES``.
        rng_or_seed: numpy Generator or seed for the class's random parameters.
        num_samples: length of the event in samples.
        sample_rate: sampling rate in Hz.
        rms: target root-mean-square level; drawn from [MIN_RMS, MAX_RMS] if None.
            The event is scaled down further if its peak would exceed MAX_PEAK.

    Returns:
        float32 array (num_samples,).
    """
    if not 0 <= class_index < NUM_CLASSES:
        raise ValueError(f"class_index must be in [0, {NUM_CLASSES}), got {class_index}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    rng = _as_rng(rng_or_seed)
    if rms is None:
        rms = rng.uniform(MIN_RMS, MAX_RMS)
    t = np.arange(num_samples) / float(sample_rate)
    x = _RENDERERS[class_index](rng, t, sample_rate)
    x = _fade_in_out(np.asarray(x, dtype=np.float64), int(round(FADE_S * sample_rate)))
    current_rms = np.sqrt(np.mean(x * x))
    if current_rms > 0:
        x *= min(rms / current_rms, MAX_PEAK / np.max(np.abs(x)))
    return x.astype(np.float32)


def make_scene(rng_or_seed: RngOrSeed, sample_rate: int = DEFAULT_SAMPLE_RATE,
               duration_s: float = DEFAULT_DURATION_S
               ) -> tuple[np.ndarray, list[Event]]:
    """Generates one scene.

    Args:
        rng_or_seed: numpy Generator (consumed) or anything ``np.random.default_rng``
            accepts (int, list of ints, SeedSequence).
        sample_rate: sampling rate in Hz.
        duration_s: scene length in seconds.

    Returns:
        waveform: float32 (round(duration_s * sample_rate),), values in [-1, 1].
        events: list of (onset_s, offset_s, class_index) sorted by onset. Onset and
            offset are exact sample positions divided by the sample rate; the event
            occupies samples [onset_s * sr, offset_s * sr), fades included.
    """
    rng = _as_rng(rng_or_seed)
    num_samples = int(round(duration_s * sample_rate))
    if num_samples < int(0.05 * sample_rate):
        raise ValueError(f"duration_s={duration_s} is too short for a scene (need >= 0.05 s)")
    waveform = rng.standard_normal(num_samples, dtype=np.float32) * np.float32(NOISE_FLOOR_RMS)
    min_len = min(int(MIN_EVENT_S * sample_rate), num_samples)
    max_len = min(int(MAX_EVENT_S * sample_rate), num_samples)
    events: list[Event] = []
    for _ in range(int(rng.integers(MIN_EVENTS, MAX_EVENTS + 1))):
        class_index = int(rng.integers(NUM_CLASSES))
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(0, num_samples - length + 1))
        waveform[start:start + length] += render_event(class_index, rng, length, sample_rate)
        events.append((start / sample_rate, (start + length) / sample_rate, class_index))
    events.sort()
    np.clip(waveform, -1.0, 1.0, out=waveform)
    return waveform, events


def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The independent generator used for scene ``index`` of ``stream`` under ``seed``."""
    return np.random.default_rng([seed, stream, index])


def iter_scenes(num_scenes: int, seed: int, *, stream: int = 0,
                sample_rate: int = DEFAULT_SAMPLE_RATE,
                duration_s: float = DEFAULT_DURATION_S
                ) -> Iterator[tuple[np.ndarray, list[Event]]]:
    """Yields ``num_scenes`` scenes one at a time (constant memory).

    Scene ``i`` depends only on (seed, stream, i); use different ``stream`` values
    for disjoint splits (the TFDS builder uses 0/1/2 for train/validation/test).
    """
    for i in range(num_scenes):
        yield make_scene(scene_rng(seed, i, stream), sample_rate, duration_s)


def make_scenes(num_scenes: int, seed: int, *, stream: int = 0,
                sample_rate: int = DEFAULT_SAMPLE_RATE,
                duration_s: float = DEFAULT_DURATION_S
                ) -> tuple[np.ndarray, list[list[Event]]]:
    """Generates a batch of scenes.

    Returns:
        waveforms: float32 (num_scenes, samples).
        events: per scene, its list of (onset_s, offset_s, class_index).
    """
    num_samples = int(round(duration_s * sample_rate))
    waveforms = np.empty((num_scenes, num_samples), dtype=np.float32)
    all_events = []
    for i, (wav, events) in enumerate(iter_scenes(num_scenes, seed, stream=stream,
                                                  sample_rate=sample_rate,
                                                  duration_s=duration_s)):
        waveforms[i] = wav
        all_events.append(events)
    return waveforms, all_events


def events_to_multi_hot(events: Sequence[Event], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Clip-level multi-hot labels uint8 (num_classes,) from a list of events."""
    labels = np.zeros((num_classes,), dtype=np.uint8)
    for _, _, class_index in events:
        labels[class_index] = 1
    return labels
