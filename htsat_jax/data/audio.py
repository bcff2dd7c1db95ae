"""Audio file reading shared by all dataset builders.

One job: turn any audio file into a mono waveform at the dataset's rate, and make
every failure explicit. The pieces:

* `load_mono(path, target_rate)`: read (soundfile, librosa/audioread as fallback for
  containers libsndfile cannot open), average channels, resample with soxr, return
  float32 `(samples,)` in [-1, 1] plus the source rate and length.
* `to_int16(x)`: the project-wide float -> int16 rule `round(clip(x, -1, 1) * 32767)`.
* `fit_length(x, n)`: zero-pad or truncate to exactly `n` samples.
* `AudioDecodeError`: raised for corrupt, truncated, empty or unreadable files; the
  builders catch it and record the file in a `SkipReport` instead of writing it.
* `SkipReport`: collects `(path, reason)` pairs for one split and writes them as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from typing import Any

import numpy as np
import soundfile as sf
import soxr

# Extensions we try to read. libsndfile handles wav/flac/ogg/opus/mp3 natively; the rest
# (YouTube downloads of AudioSet are often m4a/webm) go through librosa + audioread.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".webm", ".aac", ".mp4")
_SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")

# libsndfile accepts a WAV whose data chunk is shorter than its header says and just
# returns fewer frames; its log is the only place the mismatch shows ("data : N (should be M)").
_WAV_DATA_SIZE_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)

INT16_SCALE = 32767.0


class AudioDecodeError(Exception):
    """An audio file could not be turned into a waveform (corrupt, truncated, empty, unreadable)."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    """A decoded mono waveform.

    Attributes:
      waveform: float32 `(samples,)` at `rate`, values in [-1, 1] (not clipped here).
      rate: sample rate of `waveform` in Hz (the requested target rate).
      source_rate: the file's own sample rate in Hz.
      source_frames: the file's length in samples at `source_rate`.
      source_channels: number of channels in the file before mono mixing.
    """

    waveform: np.ndarray
    rate: int
    source_rate: int
    source_frames: int
    source_channels: int

    @property
    def source_duration_s(self) -> float:
        """Length of the original file in seconds."""
        return self.source_frames / self.source_rate


def _check_wav_not_truncated(path: str, info: sf._SoundFileInfo) -> None:
    """Raises AudioDecodeError when a WAV header promises more data than the file holds."""
    match = _WAV_DATA_SIZE_RE.search(info.extra_info or "")
    if match:
        declared, actual = int(match.group(1)), int(match.group(2))
        # A declared size *smaller* than the file (trailing chunks, streamed writers) is harmless.
        if declared > actual:
            raise AudioDecodeError(
                path, f"truncated: header declares {declared} bytes of audio data, file holds {actual}"
            )


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    """Reads with libsndfile; returns float32 `(frames, channels)` and the rate."""
    try:
        info = sf.info(path)
    except sf.LibsndfileError as err:  # unreadable header, unknown format, random bytes
        raise AudioDecodeError(path, f"unreadable audio ({err.error_string})") from err
    except (OSError, RuntimeError) as err:
        raise AudioDecodeError(path, f"unreadable audio ({err})") from err
    if info.format == "WAV" or path.lower().endswith(".wav"):
        _check_wav_not_truncated(path, info)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:  # e.g. "flac decoder lost sync"
        raise AudioDecodeError(path, f"corrupt audio data ({err})") from err
    if info.frames > 0 and data.shape[0] < info.frames:
        raise AudioDecodeError(path, f"truncated: header declares {info.frames} frames, read {data.shape[0]}")
    return data, int(rate)


def _read_librosa(path: str) -> tuple[np.ndarray, int]:
    """Fallback for containers libsndfile cannot open (m4a, webm...); needs ffmpeg via audioread."""
    import librosa  # deferred: its first import compiles numba kernels (seconds)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns when falling back to audioread
            data, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
    except Exception as err:  # audioread raises a zoo of backend-specific errors
        if type(err).__name__ == "NoBackendError":
            ext = os.path.splitext(path)[1]
            raise AudioDecodeError(
                path, f"unreadable audio (no decoder for {ext}: libsndfile cannot read it and audioread "
                "found no backend; install ffmpeg or convert the file to wav/flac)"
            ) from err
        raise AudioDecodeError(path, f"unreadable audio ({type(err).__name__}: {err})") from err
    data = np.atleast_2d(data).T  # librosa gives (channels, frames)
    return np.ascontiguousarray(data), int(rate)


def resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """The project's one host resampler: soxr 'HQ' (the same as librosa.resample(res_type='soxr_hq')).

    Takes float `(samples,)` or `(batch, samples)`; the output length is
    `ceil(samples * target_rate / source_rate)`, as librosa fixes it.
    """
    if source_rate == target_rate:
        return x
    x = np.asarray(x, dtype=np.float32)
    n_out = int(math.ceil(x.shape[-1] * target_rate / source_rate))
    if x.ndim == 1:
        y = soxr.resample(x, source_rate, target_rate, quality="soxr_hq")
        return fit_length(np.asarray(y, dtype=np.float32), n_out)
    # soxr resamples (frames, channels) arrays: every row of the batch as one channel.
    y = soxr.resample(np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T), source_rate, target_rate,
                      quality="soxr_hq")
    y = np.asarray(y, dtype=np.float32).T
    if y.shape[-1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[-1])))
    return np.ascontiguousarray(y[:, :n_out]).reshape(x.shape[:-1] + (n_out,))


def load_mono(path: os.PathLike | str, target_rate: int) -> DecodedAudio:
    """Reads an audio file as mono float32 at `target_rate`.

    Args:
      path: any file soundfile can read; other containers fall back to librosa/audioread.
      target_rate: output sample rate in Hz.

    Returns:
      DecodedAudio with `waveform` of shape (samples,) float32.

    Raises:
      AudioDecodeError: corrupt, truncated, empty, non-finite or unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioDecodeError(path, "missing file")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    if path.lower().endswith(_SOUNDFILE_EXTENSIONS):
        data, rate = _read_soundfile(path)
    else:
        data, rate = _read_librosa(path)
    frames, channels = data.shape
    if frames == 0:
        raise AudioDecodeError(path, "no audio samples (0 frames)")
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(path, "non-finite samples (NaN or inf)")
    mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    wave = resample(np.ascontiguousarray(mono, dtype=np.float32), rate, target_rate)
    return DecodedAudio(
        waveform=wave, rate=target_rate, source_rate=rate, source_frames=frames, source_channels=channels
    )


def to_int16(x: np.ndarray) -> np.ndarray:
    """float waveform (any shape) -> int16 with round(clip(x, -1, 1) * 32767)."""
    return np.round(np.clip(x, -1.0, 1.0) * INT16_SCALE).astype(np.int16)


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Zero-pads or truncates `(samples,)` to exactly `length` samples."""
    if x.shape[0] == length:
        return x
    if x.shape[0] > length:
        return x[:length]
    return np.pad(x, (0, length - x.shape[0]))


@dataclasses.dataclass
class SkipReport:
    """Files of one split that were not written, each with the reason.

    Attributes:
      dataset: builder name, e.g. "esc50".
      split: split name, e.g. "train".
      entries: list of {"path": ..., "reason": ...} in the order they were found.
      num_written: examples written for the split (set by the builder when it is done).
    """

    dataset: str
    split: str
    entries: list[dict[str, str]] = dataclasses.field(default_factory=list)
    num_written: int = 0

    def add(self, path: os.PathLike | str, reason: str) -> None:
        """Records one file that is not written."""
        self.entries.append({"path": os.fspath(path), "reason": reason})

    def add_error(self, err: AudioDecodeError, rel_path: str | None = None) -> None:
        """Records a decode failure, optionally under a path relative to the raw root."""
        self.add(rel_path if rel_path is not None else err.path, err.reason)

    def __len__(self) -> int:
        return len(self.entries)

    def reason_counts(self) -> dict[str, int]:
        """Number of skipped files per reason category (text before the first ':' or '(')."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            key = re.split(r"[:(]", entry["reason"], maxsplit=1)[0].strip()
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "num_written": self.num_written,
            "num_skipped": len(self.entries),
            "skipped_by_reason": self.reason_counts(),
            "skipped": self.entries,
        }

    def write_json(self, path: os.PathLike | str) -> None:
        """Writes the report as JSON (parent folder must exist)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")

    def summary(self) -> str:
        """One line, e.g. 'esc50/train: 1998 written, 2 skipped (truncated: 1, unreadable audio: 1)'."""
        text = f"{self.dataset}/{self.split}: {self.num_written} written, {len(self.entries)} skipped"
        if self.entries:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in self.reason_counts().items()) + ")"
        return text

    @classmethod
    def read_json(cls, path: os.PathLike | str) -> "SkipReport":
        """Reads a report written by `write_json`."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return cls(data["dataset"], data["split"], list(data["skipped"]), int(data["num_written"]))
