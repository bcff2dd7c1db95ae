"""Kaldi-style log-mel filterbank, the Audio Spectrogram Transformer's frontend, in pure ``jnp``.

Waveform ``(batch, samples)`` -> log fbank ``(batch, frames, num_mel_bins)``, the same function
as ``torchaudio.compliance.kaldi.fbank`` with the arguments the official AST dataloader passes::

    fbank(waveform - waveform.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
          window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)

i.e. per frame (25 ms = 400 samples, shift 10 ms = 160 samples, ``snip_edges=True`` so no
padding and ``1 + (samples - 400) // 160`` frames): remove the frame's DC offset, pre-emphasis
0.97 (first sample against itself), symmetric Hann window, zero-pad to 512, power spectrum,
Kaldi mel filterbank (mel = 1127 ln(1 + f/700), triangles in mel space, 20 Hz .. Nyquist, no
area normalisation, zero weight on the Nyquist bin), natural log floored at float32 epsilon.
``htk_compat`` only moves the energy coefficient, which ``use_energy=False`` leaves out.

The AST paper (and the issue) says "Hamming window"; the official code asks torchaudio for
``'hanning'`` (symmetric Hann). The code wins: ``window_type='hanning'`` is the default here.

Then :func:`pad_or_crop` (zeros appended, or the first ``target_length`` frames kept, on the raw
log fbank as the official dataloader does) and :func:`normalise` ``(x - mean) / (2 * std)``.

Without torchaudio, ``transformers.ASTFeatureExtractor`` computes the same fbank in float64 numpy;
``tests/test_ast.py`` compares against it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

# torch.finfo(torch.float32).eps: the log floor torchaudio's fbank uses (for float32 input).
LOG_FLOOR = float(np.finfo(np.float32).eps)
WINDOW_TYPES = ("hanning", "hamming", "povey", "rectangular")


@dataclasses.dataclass(frozen=True)
class KaldiFbankConfig:
    """torchaudio ``kaldi.fbank`` settings. Defaults: the official AST recipe (16 kHz, 128 bins)."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist (Kaldi convention), 0 = Nyquist
    preemphasis: float = 0.97
    # Official code: 'hanning' (the paper says Hamming; see module docstring).
    window_type: str = "hanning"
    remove_dc_offset: bool = True
    round_to_power_of_two: bool = True
    # The official dataloader subtracts each utterance's mean from the waveform before the fbank.
    # With remove_dc_offset (per-frame mean removal) that is mathematically a no-op; kept for
    # exactness of float rounding.
    subtract_utterance_mean: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.window_type not in WINDOW_TYPES:
            problems.append(f"window_type {self.window_type!r} is not one of {WINDOW_TYPES}")
        if self.sample_rate <= 0 or self.num_mel_bins <= 0:
            problems.append("sample_rate and num_mel_bins must be positive")
        if self.window_length < 2 or self.window_shift < 1:
            problems.append(f"frame_length_ms {self.frame_length_ms} / frame_shift_ms {self.frame_shift_ms} "
                            f"give {self.window_length} / {self.window_shift} samples")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            problems.append(f"need 0 <= low_freq < high_freq <= Nyquist, got {self.low_freq} .. {high} Hz")
        if problems:
            raise ValueError("invalid KaldiFbankConfig: " + "; ".join(problems))

    @property
    def window_length(self) -> int:
        """Samples per frame: 400 at 16 kHz (Kaldi truncates ``sr * ms / 1000``)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frames: 160 at 16 kHz."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def padded_length(self) -> int:
        """FFT length: the window rounded up to a power of two (512 at 16 kHz)."""
        n = self.window_length
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (``snip_edges=True``): 998 for 10 s at 16 kHz."""
        if num_samples < self.window_length:
            return 0
        return 1 + (num_samples - self.window_length) // self.window_shift

    def samples_for_frames(self, frames: int) -> int:
        """Fewest samples that give ``frames`` frames (frames >= 1)."""
        return self.window_length + (frames - 1) * self.window_shift


AST_FBANK = KaldiFbankConfig()


def _mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def mel_banks(config: KaldiFbankConfig) -> np.ndarray:
    """Kaldi mel filterbank as a ``(padded_length // 2 + 1, num_mel_bins)`` float32 matrix.

    torchaudio's ``get_mel_banks`` gives ``(num_mel_bins, padded // 2)`` and pads one zero column
    for the Nyquist bin; this is its transpose, computed in float64 then rounded.
    """
    padded = config.padded_length
    num_fft_bins = padded // 2
    nyquist = 0.5 * config.sample_rate
    high = config.high_freq if config.high_freq > 0 else nyquist + config.high_freq
    mel_low, mel_high = _mel(config.low_freq), _mel(high)
    delta = (mel_high - mel_low) / (config.num_mel_bins + 1)
    left = mel_low + np.arange(config.num_mel_bins)[:, None] * delta
    center, right = left + delta, left + 2.0 * delta
    mel = _mel(config.sample_rate / padded * np.arange(num_fft_bins))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))  # (mels, num_fft_bins)
    banks = np.concatenate([banks, np.zeros((config.num_mel_bins, 1))], axis=1)
    return np.ascontiguousarray(banks.T.astype(np.float32))


@functools.lru_cache(maxsize=16)
def window(config: KaldiFbankConfig) -> np.ndarray:
    """The analysis window, float64 ``(window_length,)``; Kaldi's symmetric (``N - 1``) forms."""
    n = config.window_length
    a = 2.0 * np.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if config.window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if config.window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if config.window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    return np.ones(n)


def fbank(waveform: jax.Array, config: KaldiFbankConfig = AST_FBANK) -> jax.Array:
    """Kaldi log-mel filterbank.

    Args:
      waveform: ``(batch, samples)`` float in [-1, 1] at ``config.sample_rate`` (the official
        dataloader's ``torchaudio.load`` scaling, which the AudioSet mean/std were computed on).
      config: fbank settings.

    Returns:
      ``(batch, config.num_frames(samples), num_mel_bins)`` natural-log mel energies, unnormalised.
    """
    if waveform.ndim != 2:
        raise ValueError(f"fbank expects (batch, samples), got shape {waveform.shape}")
    n, shift = config.window_length, config.window_shift
    if waveform.shape[1] < n:
        raise ValueError(f"waveform has {waveform.shape[1]} samples; one {config.frame_length_ms:g} ms frame "
                         f"needs {n} samples at {config.sample_rate} Hz")
    x = waveform
    if config.subtract_utterance_mean:
        x = x - jnp.mean(x, axis=1, keepdims=True)
    frames = config.num_frames(x.shape[1])
    idx = np.arange(frames)[:, None] * shift + np.arange(n)[None, :]
    x = x[:, idx]  # (B, frames, n)
    if config.remove_dc_offset:
        x = x - jnp.mean(x, axis=-1, keepdims=True)
    if config.preemphasis:
        # Kaldi pre-emphasis: x[i] -= c * x[i-1]; the first sample uses itself (replicate padding).
        previous = jnp.concatenate([x[..., :1], x[..., :-1]], axis=-1)
        x = x - config.preemphasis * previous
    x = x * jnp.asarray(window(config), x.dtype)
    spec = jnp.fft.rfft(x, n=config.padded_length, axis=-1)  # zero-padded to 512
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    mel = jnp.matmul(power, jnp.asarray(mel_banks(config), power.dtype), precision=jax.lax.Precision.HIGHEST)
    return jnp.log(jnp.maximum(mel, LOG_FLOOR))


def pad_or_crop(fb: jax.Array, target_length: int, value: float = 0.0) -> jax.Array:
    """``(B, T, F)`` -> ``(B, target_length, F)``: append ``value`` frames or keep the first frames.

    The official dataloader pads the *raw* log fbank with zeros (``ZeroPad2d``) before
    normalising, so padded frames end up at ``(0 - mean) / (2 std)`` (0.467 for AudioSet), not 0.
    """
    frames = fb.shape[1]
    if frames >= target_length:
        return fb[:, :target_length]
    return jnp.pad(fb, ((0, 0), (0, target_length - frames), (0, 0)), constant_values=value)


def normalise(fb: jax.Array, mean: float, std: float) -> jax.Array:
    """The official input normalisation ``(fbank - mean) / (2 * std)`` (std doubled on purpose:
    the AST authors aim at a standard deviation of 0.5)."""
    return (fb - mean) / (2.0 * std)
