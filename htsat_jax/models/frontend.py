"""On-device log-mel frontend: waveform ``(batch, samples)`` -> dB log-mel ``(batch, frames, mels)``.

Matches the official HTS-AT frontend (torchlibrosa ``Spectrogram`` + ``LogmelFilterBank``):
periodic Hann window, ``center=True`` with reflect padding, power spectrogram, Slaney-scale and
Slaney-normalised mel filters from librosa, ``10*log10(max(mel, 1e-10))`` with no top-dB clamp.
The official code computes the DFT as a float32 convolution; an FFT gives the same values within
the official fixtures' tolerance (the FFT is the more exact of the two).

Only the filterbank comes from librosa, once per configuration, on the host; everything that
touches audio runs inside ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

# The log floor of torchlibrosa's LogmelFilterBank (amin); ref=1.0 so no offset is subtracted.
_AMIN = 1e-10


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """STFT / mel settings. Defaults are the AudioSet and ESC-50 ones (HTSAT_SPEC §1)."""

    sample_rate: int = 32000
    n_fft: int = 1024  # window length equals n_fft in every official config
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples (center=True)."""
        return 1 + num_samples // self.hop_length

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def validate(self) -> None:
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError(f"FrontendConfig needs positive n_fft/hop_length/n_mels, got {self}")
        if not 0 <= self.fmin < self.fmax:
            raise ValueError(f"FrontendConfig needs 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}")


# The official Speech Commands V2 run keeps fmax=14000 above the 8 kHz Nyquist, which leaves the top
# 9 mel filters empty (constant -100 dB rows). We match it, since released SCV2 weights saw exactly that.
AUDIOSET_FRONTEND = FrontendConfig()
SPEECH_COMMANDS_FRONTEND = FrontendConfig(sample_rate=16000, hop_length=160)


@functools.lru_cache(maxsize=16)
def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """Slaney mel filterbank as the official code stores it: ``(n_fft // 2 + 1, n_mels)`` float32."""
    import librosa  # imported lazily: its first import compiles numba kernels (seconds)

    config.validate()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            # librosa warns about empty filters when fmax > Nyquist (official SCV2 setting); expected.
            warnings.simplefilter("ignore", UserWarning)
            mel = librosa.filters.mel(
                sr=config.sample_rate,
                n_fft=config.n_fft,
                n_mels=config.n_mels,
                fmin=config.fmin,
                fmax=config.fmax,
                htk=False,
                norm="slaney",
            )
    return np.ascontiguousarray(mel.T.astype(np.float32))


@functools.lru_cache(maxsize=4)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (``fftbins=True``), float64 so float64 runs stay exact."""
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def _frame_indices(num_samples_padded: int, n_fft: int, hop: int) -> np.ndarray:
    num_frames = 1 + (num_samples_padded - n_fft) // hop
    return np.arange(num_frames)[:, None] * hop + np.arange(n_fft)[None, :]


def power_spectrogram(waveform: jax.Array, config: FrontendConfig) -> jax.Array:
    """``(batch, samples)`` -> power STFT ``(batch, frames, n_fft // 2 + 1)``."""
    pad = config.n_fft // 2
    if waveform.shape[-1] <= pad:
        raise ValueError(
            f"waveform has {waveform.shape[-1]} samples; reflect padding needs more than {pad} "
            f"(n_fft // 2) samples"
        )
    # numpy/torch "reflect" (edge sample not repeated) is jnp.pad's mode="reflect".
    padded = jnp.pad(waveform, ((0, 0), (pad, pad)), mode="reflect")
    idx = _frame_indices(padded.shape[-1], config.n_fft, config.hop_length)
    frames = padded[:, idx] * jnp.asarray(hann_window(config.n_fft), dtype=waveform.dtype)
    spec = jnp.fft.rfft(frames, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def log_mel(waveform: jax.Array, config: FrontendConfig = AUDIOSET_FRONTEND) -> jax.Array:
    """dB log-mel spectrogram.

    Args:
      waveform: ``(batch, samples)`` float, values in [-1, 1], at ``config.sample_rate``.
      config: STFT / mel settings.

    Returns:
      ``(batch, 1 + samples // hop, n_mels)`` in dB; silence sits at -100 dB.
    """
    if waveform.ndim != 2:
        raise ValueError(f"log_mel expects (batch, samples), got shape {waveform.shape}")
    power = power_spectrogram(waveform, config)
    mel_basis = jnp.asarray(mel_filterbank(config), dtype=power.dtype)
    mel = jnp.matmul(power, mel_basis, precision=jax.lax.Precision.HIGHEST)
    return 10.0 * jnp.log10(jnp.maximum(mel, _AMIN))
