"""On-device resampling (inside the jitted step): data stored at one rate feeding a model at another.

The host side has one resampler too (soxr, :func:`htsat_jax.data.audio.resample`); this one runs
on the accelerator so a dataset prepared once (AudioSet at 32 kHz) trains models of any rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def resample_fft(waveform: jax.Array, orig_rate: int, target_rate: int) -> jax.Array:
    """Band-limited resampling on device: ``(batch, n)`` at ``orig_rate`` -> ``(batch, m)``.

    Keeps the spectrum below the lower Nyquist frequency and drops the rest (an ideal low-pass,
    as ``scipy.signal.resample``), so a model trained at 16 kHz can read data stored at 32 kHz
    without a second copy of the dataset. The signal is treated as periodic: the first and last
    few milliseconds see a little of each other, which the fbank's 25 ms frames barely notice.
    """
    if orig_rate == target_rate:
        return waveform
    n = waveform.shape[-1]
    m = int(round(n * target_rate / orig_rate))
    spec = jnp.fft.rfft(waveform, axis=-1)
    keep = min(spec.shape[-1], m // 2 + 1)
    spec = spec[..., :keep]
    if m % 2 == 0 and m < n:
        # irfft counts the new Nyquist bin once, every other bin twice (as +f and -f): double it so
        # a component there keeps its amplitude (scipy.signal.resample does the same).
        spec = spec.at[..., -1].multiply(2.0)
    return jnp.fft.irfft(spec, n=m, axis=-1) * (m / n)
