"""High-level inference API: ``AudioTagger.from_checkpoint(path)(waveform, sample_rate)``."""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import convert
from htsat_jax.models.htsat import HTSAT

OUTPUT_NAMES = ("clipwise_output", "framewise_output", "latent_output")


class AudioInputError(ValueError):
    """Audio that cannot be tagged as given (wrong rank, dtype, rate, NaN, empty...)."""


def validate_waveform(waveform: Any, sample_rate: Any) -> np.ndarray:
    """Check and normalise a user waveform to float32 ``(batch, samples)``.

    Raises:
      AudioInputError: with a message that says what is wrong and how to fix it.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioInputError(f"sample_rate must be a positive integer number of Hz, got {sample_rate!r}")
    try:
        x = np.asarray(waveform)
    except Exception as e:  # noqa: BLE001 - ragged lists etc.
        raise AudioInputError(f"waveform could not be read as an array: {e}") from e
    if x.dtype == object:
        raise AudioInputError("waveform is ragged or not numeric; pass a (samples,) or (batch, samples) array")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        raise AudioInputError(
            f"waveform has integer dtype {x.dtype}; pass float audio in [-1, 1] "
            "(for int16 PCM: waveform.astype(np.float32) / 32768)"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioInputError(f"waveform must be a float array, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AudioInputError(
            f"waveform must be (samples,) or (batch, samples), got shape {x.shape}; "
            "mix multichannel audio to mono first (e.g. waveform.mean(axis=channel_axis))"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise AudioInputError(f"waveform is empty (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise AudioInputError(f"waveform contains NaN or inf (first at batch {bad[0]}, sample {bad[1]})")
    peak = float(np.max(np.abs(x)))
    if peak > 2.0:
        warnings.warn(f"waveform peak is {peak:.3g}; the model expects audio scaled to [-1, 1]", stacklevel=3)
    return x.astype(np.float32, copy=False)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``(batch, samples)`` resampled with soxr (librosa's default high-quality resampler)."""
    if orig_sr == target_sr:
        return x
    import librosa

    return librosa.resample(x, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq", axis=-1).astype(np.float32)


class AudioTagger:
    """Runs an HTS-AT model on numpy audio.

    ``tagger(waveform, sample_rate)`` follows the official inference behaviour: inputs up to
    ``target_frames`` STFT frames (10.24 s at the model rate for the paper model) take the official
    ``infer_mode`` path (short inputs are tiled; exactly 10 s equals the official eval forward);
    longer inputs take the official eval path (two or more half-length crops, outputs averaged).
    """

    def __init__(self, model: HTSAT, *, class_names: Sequence[str] | None = None, batch_size: int = 16):
        if class_names is not None and len(class_names) != model.config.num_classes:
            raise ValueError(f"{len(class_names)} class names for a {model.config.num_classes}-class model")
        self.model = model
        self.config = model.config
        self.class_names = list(class_names) if class_names is not None else None
        self.batch_size = batch_size
        self._graphdef, self._state = nnx.split(model)

    @classmethod
    def from_checkpoint(cls, path: str, *, batch_size: int = 16, loss_type: str | None = None,
                        **kwargs) -> "AudioTagger":
        """Load an official PyTorch checkpoint file or a model directory of this project.

        Args:
          path: ``.ckpt``/``.pth`` file (official HTS-AT) or a directory written by
            ``python -m htsat_jax.convert`` / ``htsat_jax.checkpoint.save_model``.
          loss_type: for official files only: override the guessed output activation.
        """
        if os.path.isdir(path):
            model, meta = ckpt_lib.load_model(path, **kwargs)
            return cls(model, class_names=meta.get("class_names"), batch_size=batch_size)
        if os.path.isfile(path):
            config, weights = convert.load_torch_checkpoint(path, loss_type=loss_type)
            return cls(ckpt_lib.build_model(config, weights, **kwargs), batch_size=batch_size)
        raise FileNotFoundError(f"checkpoint not found: {path} (expected an official .ckpt file or a model "
                                "directory containing config.json)")

    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    @property
    def max_samples(self) -> int:
        """Longest input (at the model rate) the official forward accepts without windowing."""
        fe = self.config.frontend
        return (2 * self.config.target_frames + 1) * fe.hop_length - 1

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def _forward(self, state, x, infer_mode: bool):
        return nnx.merge(self._graphdef, state)(x, infer_mode=infer_mode)

    def __call__(self, waveform: Any, sample_rate: int) -> dict[str, np.ndarray]:
        """Tag audio.

        Args:
          waveform: float array ``(samples,)`` or ``(batch, samples)`` in [-1, 1].
          sample_rate: its rate in Hz; resampled to the model's rate when different.

        Returns:
          ``clipwise_output (batch, classes)``, ``framewise_output (batch, target_frames, classes)``,
          ``latent_output (batch, num_features)`` as numpy arrays (batch kept even for 1-D input).
        """
        x = resample(validate_waveform(waveform, sample_rate), int(sample_rate), self.sample_rate)
        fe = self.config.frontend
        if x.shape[1] <= fe.n_fft // 2:
            raise AudioInputError(
                f"audio is {x.shape[1] / self.sample_rate * 1000:.1f} ms long at {self.sample_rate} Hz; "
                f"the frontend needs more than {fe.n_fft // 2} samples ({fe.n_fft / 2 / self.sample_rate * 1000:.0f} ms)"
            )
        if x.shape[1] > self.max_samples:
            raise AudioInputError(
                f"audio is {x.shape[1] / self.sample_rate:.2f} s; the official forward takes at most "
                f"{self.max_samples / self.sample_rate:.2f} s. Cut it into 10 s windows and tag each."
            )
        infer_mode = fe.num_frames(x.shape[1]) <= self.config.target_frames
        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = jnp.asarray(x[start:start + self.batch_size])
            outs.append(jax.device_get(self._forward(self._state, chunk, infer_mode)))
        return {k: np.concatenate([o[k] for o in outs]) for k in OUTPUT_NAMES}

    def top_tags(self, clipwise: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(name, score)`` per clip from a ``(batch, classes)`` clipwise output."""
        names = self.class_names or [f"class_{i}" for i in range(self.config.num_classes)]
        order = np.argsort(-clipwise, axis=1)[:, :k]
        return [[(names[i], float(row[i])) for i in idx] for row, idx in zip(clipwise, order)]
