r"""YAMNet's log-mel frontend, exactly as Google's ``features.py`` / ``params.py`` define it, in JAX.

Waveform at 16 kHz -> the official zero padding (:func:`padded_length`) -> frames of 400 samples
every 160 (25 ms / 10 ms, **no centring**: frame ``t`` covers samples ``[160 t, 160 t + 400)``)
-> periodic Hann window -> zero-padded to 512 at the end, real FFT (257 bins) -> **magnitude**
(not power) -> HTK mel matrix (64 bands, 125-7500 Hz, triangles in the mel domain, no area
normalisation, the DC bin weighted 0; ``tf.signal.linear_to_mel_weight_matrix``) -> natural
``log(mel + 0.001)`` -> patches of 96 frames every 48 (0.96 s every 0.48 s), **time first**:
``(patches, 96, 64)``.

Every step is jit-able; shapes depend only on the (static) input length. This is not the HTS-AT
frontend (``htsat_jax.models.frontend``): power, Slaney mel, log10 and centred frames there.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16000
WINDOW = 400            # stft_window_seconds 0.025
HOP = 160               # stft_hop_seconds 0.010
FFT = 512               # 2 ** ceil(log2(400))
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96       # patch_window_seconds 0.96
PATCH_HOP_FRAMES = 48   # patch_hop_seconds 0.48
# The official pad_waveform: at least one patch (0.96 + 0.025 - 0.010 s = 15600 samples), then a
# whole number of patch hops (7680 samples) beyond it.
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP + WINDOW
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * HOP
PATCH_HOP_SECONDS = PATCH_HOP_SAMPLES / SAMPLE_RATE      # 0.48
PATCH_SECONDS = MIN_SAMPLES / SAMPLE_RATE               # 0.975: the audio one patch sees


def padded_length(num_samples: int) -> int:
    """The official ``pad_waveform`` length: ``max(n, 15600)`` rounded up to ``15600 + k * 7680``.

    8000 -> 15600 (1 patch); 16000 -> 23280 (2 patches); 48000 -> 54000 (6 patches).
    """
    extra = max(int(num_samples), MIN_SAMPLES) - MIN_SAMPLES
    return MIN_SAMPLES + math.ceil(extra / PATCH_HOP_SAMPLES) * PATCH_HOP_SAMPLES


def num_frames(num_samples: int) -> int:
    """STFT frames of ``num_samples`` samples (no padding): ``1 + (n - 400) // 160``, 0 below 400."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // HOP


def num_patches(frames: int) -> int:
    """Complete 96-frame patches every 48 frames (``tf.signal.frame`` without pad_end)."""
    return 0 if frames < PATCH_FRAMES else 1 + (frames - PATCH_FRAMES) // PATCH_HOP_FRAMES


def official_num_patches(num_samples: int) -> int:
    """Patches the official model gives for ``num_samples`` samples (after its padding)."""
    return num_patches(num_frames(padded_length(num_samples)))


def official_num_patches_traced(num_samples):
    """:func:`official_num_patches` of a (traced) integer array: ``1 + ceil(max(n - 15600, 0) / 7680)``."""
    extra = jnp.maximum(jnp.asarray(num_samples, jnp.int32) - MIN_SAMPLES, 0)
    return 1 + (extra + PATCH_HOP_SAMPLES - 1) // PATCH_HOP_SAMPLES


@functools.lru_cache(maxsize=None)
def hann_window(dtype: str = "float32") -> np.ndarray:
    """Periodic Hann window of 400 samples (``tf.signal.hann_window`` default)."""
    n = np.arange(WINDOW, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / WINDOW)).astype(dtype)


def _hz_to_mel(f, dtype):
    """HTK mel, 1127 ln(1 + f / 700), each operation rounded to ``dtype`` (the log correctly rounded)."""
    ratio = (dtype(1.0) + np.asarray(f, dtype) / dtype(700.0)).astype(dtype)
    return (dtype(1127.0) * np.log(ratio.astype(np.float64)).astype(dtype)).astype(dtype)


def _linspace(start, stop, num, dtype):
    """``tf.linspace`` in ``dtype``: ``start + i * ((stop - start) / (num - 1))``, exact end points."""
    start, stop = dtype(start), dtype(stop)
    step = (stop - start) / dtype(num - 1)
    out = (np.arange(num, dtype=dtype) * step + start).astype(dtype)
    out[0], out[-1] = start, stop
    return out


@functools.lru_cache(maxsize=None)
def mel_matrix(dtype: str = "float32") -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)``: ``(257, 64)``.

    float32 follows TensorFlow's float32 arithmetic step by step (it differs from the official
    matrix by at most 6e-6 on 43 of its 16448 entries, from TF's own log); float64 is the formula
    in float64. Row 0 (DC) is zero; the non-zero rows are 5..239.
    """
    dt = np.dtype(dtype).type
    bins_hz = _linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1, dt)[1:]          # the DC bin is dropped...
    bins_mel = _hz_to_mel(bins_hz, dt)[:, None]
    edges = _linspace(_hz_to_mel(MEL_MIN_HZ, dt), _hz_to_mel(MEL_MAX_HZ, dt), MEL_BANDS + 2, dt)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(dt(0.0), np.minimum(rising, falling)).astype(dt)
    return np.concatenate([np.zeros((1, MEL_BANDS), dt), weights])          # ...and padded back as zeros


def _compute_dtype(x) -> jnp.dtype:
    """float64 for a float64 waveform (``jax_enable_x64``), float32 otherwise (also for bf16 / int input)."""
    return jnp.dtype(jnp.float64) if x.dtype == jnp.float64 else jnp.dtype(jnp.float32)


def pad_waveform(waveform):
    """``(batch, n)`` -> ``(batch, padded_length(n))``: zeros appended (the official rule)."""
    n = waveform.shape[-1]
    target = padded_length(n)
    return jnp.pad(waveform, [(0, 0)] * (waveform.ndim - 1) + [(0, target - n)]) if target > n else waveform


def log_mel(waveform):
    """``(batch, n)`` waveform (no padding applied here) -> ``(batch, frames, 64)`` log-mel.

    Computed in float32 (float64 for a float64 input under ``jax_enable_x64``).
    """
    dtype = _compute_dtype(waveform)
    x = waveform.astype(dtype)
    frames = num_frames(x.shape[-1])
    if frames < 1:
        raise ValueError(f"{x.shape[-1]} samples is shorter than one STFT frame ({WINDOW}); pad the waveform "
                         "first (pad_waveform)")
    index = np.arange(frames)[:, None] * HOP + np.arange(WINDOW)[None, :]
    framed = x[..., index] * jnp.asarray(hann_window(dtype.name))           # (batch, frames, 400)
    magnitude = jnp.abs(jnp.fft.rfft(framed, n=FFT, axis=-1))                # (batch, frames, 257)
    mel = jnp.matmul(magnitude, jnp.asarray(mel_matrix(dtype.name)), precision="highest")
    return jnp.log(mel + LOG_OFFSET)


def patches(log_mel_frames):
    """``(batch, frames, 64)`` -> ``(batch, patches, 96, 64)``: frames ``[48 i, 48 i + 96)``."""
    count = num_patches(log_mel_frames.shape[-2])
    if count < 1:
        raise ValueError(f"{log_mel_frames.shape[-2]} frames is shorter than one patch ({PATCH_FRAMES})")
    index = np.arange(count)[:, None] * PATCH_HOP_FRAMES + np.arange(PATCH_FRAMES)[None, :]
    return log_mel_frames[..., index, :]


def waveform_to_patches(waveform):
    """The official waveform-in path: pad, log-mel, patches. Returns ``(log_mel, patches)``."""
    lm = log_mel(pad_waveform(waveform))
    return lm, patches(lm)


# ----------------------------------------------------------------------------- export (ONNX) helpers


def patches_sliced(log_mel_frames):
    """:func:`patches` with slices instead of a gather (ONNX export; the same values).

    Patch ``i`` is 48-frame blocks ``i`` and ``i + 1`` side by side (96 = 2 x 48), so the graph
    holds two slices and a concatenation rather than a ``(patches, 96)`` index table.
    """
    frames = log_mel_frames.shape[-2]
    count = num_patches(frames)
    if count < 1:
        raise ValueError(f"{frames} frames is shorter than one patch ({PATCH_FRAMES})")
    per_patch = PATCH_FRAMES // PATCH_HOP_FRAMES
    blocks_needed = count + per_patch - 1
    x = log_mel_frames[..., :blocks_needed * PATCH_HOP_FRAMES, :]
    blocks = x.reshape(x.shape[:-2] + (blocks_needed, PATCH_HOP_FRAMES, x.shape[-1]))
    return jnp.concatenate([blocks[..., j:j + count, :, :] for j in range(per_patch)], axis=-2)


def log_mel_exportable(waveform):
    """:func:`log_mel` from pieces ONNX export can lower (``htsat_jax.inference.export``): slice
    framing (``frame_signal``), the power of a real DFT (``power_spectrum``, no complex tensors) and
    magnitude ``sqrt(power)``. ``(batch, n)`` (padded already) -> ``(batch, frames, 64)`` float32;
    within float32 rounding of :func:`log_mel` (5e-7 on the fixture clips)."""
    from htsat_jax.inference import export

    x = waveform.astype(jnp.float32)
    if num_frames(x.shape[-1]) < 1:
        raise ValueError(f"{x.shape[-1]} samples is shorter than one STFT frame ({WINDOW}); pad the waveform "
                         "first (pad_waveform)")
    framed = export.frame_signal(x, WINDOW, HOP) * jnp.asarray(hann_window("float32"))   # (batch, frames, 400)
    framed = jnp.pad(framed, ((0, 0), (0, 0), (0, FFT - WINDOW)))
    magnitude = jnp.sqrt(export.power_spectrum(framed))                                   # (batch, frames, 257)
    mel = jnp.matmul(magnitude, jnp.asarray(mel_matrix("float32")), precision="highest")
    return jnp.log(mel + LOG_OFFSET)


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """While tracing for ONNX export: this module's :func:`log_mel` and :func:`patches` are
    :func:`log_mel_exportable` and :func:`patches_sliced`, for model code that calls them through
    the module (LEAN's YAMNet branch). Restored on exit. Meant for the export's trace only (it
    changes the module for every caller meanwhile; the values agree within float32 rounding)."""
    global log_mel, patches
    saved = log_mel, patches
    log_mel, patches = log_mel_exportable, patches_sliced
    try:
        yield
    finally:
        log_mel, patches = saved
