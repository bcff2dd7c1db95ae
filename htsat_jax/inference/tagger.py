"""High-level inference API.

* ``AudioTagger.from_checkpoint(path)(waveform, sample_rate)``: the official forward (<= 20 s).
* ``tag_file(path)``, ``events(waveform, sr)``, ``embed(waveform, sr)``, ``analyse(waveform, sr)``:
  audio of any length and rate, cut into windows and stitched back (``htsat_jax.inference.windowing``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import warnings
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import models
from htsat_jax.data.audio import resample  # noqa: F401 (re-exported: the one host resampler)
from htsat_jax.inference import events as events_lib
from htsat_jax.inference import windowing

# What an HTS-AT returns; other models return their own names (AST: clipwise_output, logits, latent_output).
OUTPUT_NAMES = ("clipwise_output", "framewise_output", "latent_output")
AUDIOSET_CLASS_FILE = "audioset_class_labels_indices.csv"
# ``clip_gate`` / ``thresholds`` default: what the model directory says (see AudioTagger.__init__).
FROM_MODEL = "model"


@functools.lru_cache(maxsize=1)
def _audioset_class_names() -> tuple[str, ...]:
    from importlib import resources

    with resources.as_file(resources.files("htsat_jax") / "resources" / AUDIOSET_CLASS_FILE) as path:
        return tuple(ckpt_lib.read_class_names(str(path)))


def audioset_class_names() -> list[str]:
    """The 527 AudioSet display names in model output order (bundled ``class_labels_indices.csv``)."""
    return list(_audioset_class_names())


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


class AudioTagger:
    """Runs any registered model (``htsat_jax.models``) on numpy audio.

    ``tagger(waveform, sample_rate)`` runs the model's own inference forward (``infer``). For
    HTS-AT that is the official behaviour: inputs up to ``target_frames`` STFT frames (10.24 s at
    the model rate for the paper model) take the official ``infer_mode`` path (short inputs are
    tiled; exactly 10 s equals the official eval forward); longer inputs take the official eval
    path (two or more half-length crops, outputs averaged).

    Audio of any length: :meth:`analyse` (stitched outputs), :meth:`events` (timed events),
    :meth:`embed` (clip and frame embeddings), :meth:`tag_file` / :meth:`iter_tag_files` (files of
    any format, rate and channel count). They cut long audio into windows (``htsat_jax.inference.windowing``)
    and batch windows of many recordings together.
    """

    def __init__(self, model: nnx.Module, *, class_names: Sequence[str] | None = None, batch_size: int = 16,
                 event_thresholds: float | Sequence[float] | None = None, event_clip_gate: float | None = None):
        """
        Args:
          model: the Flax model.
          class_names: one per output; a 527-class model without names gets the AudioSet list.
          batch_size: windows per forward pass.
          event_thresholds: default frame threshold(s) of :meth:`events` (scalar or per class);
            None = 0.5. ``from_checkpoint`` takes them from the model directory (the trainer writes
            the thresholds it tuned).
          event_clip_gate: default gate of :meth:`events`: a class yields events in a window only
            when the window's clip score exceeds it (None = no gate).
        """
        num_classes = model.config.num_classes
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for a {num_classes}-class model")
        if class_names is None and num_classes == len(_audioset_class_names()):
            class_names = _audioset_class_names()
        if event_thresholds is not None:
            thr = np.asarray(event_thresholds, np.float64)
            if thr.ndim > 1 or (thr.ndim == 1 and thr.shape[0] != num_classes):
                raise ValueError(f"event_thresholds: a scalar or {num_classes} values, got shape {thr.shape}")
            event_thresholds = thr
        self.model = model
        self.config = model.config
        self.module = models.module_of(model.config)
        self.class_names = list(class_names) if class_names is not None else None
        self.batch_size = batch_size
        self.event_thresholds = event_thresholds
        self.event_clip_gate = event_clip_gate
        self._graphdef, self._state = nnx.split(model)
        self._window_programs: dict[Any, Any] = {}

    @classmethod
    def from_checkpoint(cls, path: str, *, batch_size: int = 16, loss_type: str | None = None,
                        model: str | None = None, **kwargs) -> "AudioTagger":
        """Load a model directory of this project or a released checkpoint of any registered model.

        Args:
          path: a directory written by training / ``python -m htsat_jax.convert`` /
            ``htsat_jax.checkpoint.save_model``, or a file (or folder) a registered model reads
            (official HTS-AT ``.ckpt``; official AST ``.pth``, transformers AST ``.safetensors`` /
            ``.bin`` / ``save_pretrained`` folder; ...).
          loss_type: for released files only: override the guessed output activation.
          model: for released files: the registry name of the model it holds; None asks each
            registered model whether it recognises the file.
        """
        if ckpt_lib.is_model_dir(path):
            net, meta = ckpt_lib.load_model(path, **kwargs)
            thresholds, gate = meta.get("event_thresholds"), meta.get("event_clip_gate")
            if thresholds is not None and np.ndim(thresholds) == 1 and len(thresholds) != net.config.num_classes:
                # Event classes that group model classes (DESED from an AudioSet model): not per output.
                warnings.warn(f"{path}: {len(thresholds)} event_thresholds for {net.config.num_classes} "
                              "classes (grouped event classes); using 0.5 and no clip gate", stacklevel=2)
                thresholds, gate = None, None
            return cls(net, class_names=meta.get("class_names"), batch_size=batch_size,
                       event_thresholds=thresholds, event_clip_gate=gate)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path} (expected a model directory containing "
                                    "config.json or a released checkpoint file)")
        module = models.get(model) if model is not None else models.find_loader(path)
        if module is None:
            from htsat_jax.convert import CheckpointError
            raise CheckpointError(f"{path}: not a model directory, and no registered model "
                                  f"({', '.join(models.names())}) recognises this file")
        config, weights, class_names = module.load(path, loss_type=loss_type)
        return cls(ckpt_lib.build_model(config, weights, **kwargs), class_names=class_names, batch_size=batch_size)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def max_samples(self) -> int | None:
        """Longest input (at the model rate) the model's forward accepts without windowing (None: any)."""
        return self.module.input_limits(self.config)[1]

    @property
    def min_samples(self) -> int:
        return self.module.input_limits(self.config)[0]

    @functools.partial(jax.jit, static_argnums=(0,))
    def _forward(self, state, x):
        return self.module.infer(nnx.merge(self._graphdef, state), x)

    def __call__(self, waveform: Any, sample_rate: int) -> dict[str, np.ndarray]:
        """Tag audio.

        Args:
          waveform: float array ``(samples,)`` or ``(batch, samples)`` in [-1, 1].
          sample_rate: its rate in Hz; resampled to the model's rate when different.

        Returns:
          the model's outputs as numpy arrays, batch kept even for 1-D input. HTS-AT:
          ``clipwise_output (batch, classes)``, ``framewise_output (batch, target_frames, classes)``,
          ``latent_output (batch, num_features)``; an AST: ``clipwise_output``, ``logits``,
          ``latent_output`` (no frame-wise output).
        """
        x = resample(validate_waveform(waveform, sample_rate), int(sample_rate), self.sample_rate)
        low, high = self.min_samples, self.max_samples
        if x.shape[1] < low:
            raise AudioInputError(
                f"audio is {x.shape[1] / self.sample_rate * 1000:.1f} ms long at {self.sample_rate} Hz; "
                f"the model needs at least {low} samples ({low / self.sample_rate * 1000:.0f} ms)")
        if high is not None and x.shape[1] > high:
            raise AudioInputError(
                f"audio is {x.shape[1] / self.sample_rate:.2f} s; the model's forward takes at most "
                f"{high / self.sample_rate:.2f} s. Cut it into windows and tag each"
                + (" (AudioTagger.analyse / .events / .embed / .tag_file do that for audio of any length)."
                   if self.windows() is not None else "."))
        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = jnp.asarray(x[start:start + self.batch_size])
            outs.append(jax.device_get(self._forward(self._state, chunk)))
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def windows(self, window_s: float = 10.0, hop_s: float = 5.0) -> windowing.Windows | None:
        """How this model runs on audio of any length (None: it has no frame-wise output)."""
        return self.module.windows(self.config, window_s, hop_s)

    def _require_frames(self, method: str, window_s: float = 10.0, hop_s: float = 5.0) -> windowing.Windows:
        win = self.windows(window_s, hop_s)
        if win is None:
            raise NotImplementedError(
                f"the {models.name_of(self.config)} model has no frame-wise output; AudioTagger.{method} needs "
                "one (use a model with frame-wise output, e.g. HTS-AT). Use tagger(waveform, sample_rate) for "
                "clip tags.")
        return win

    @property
    def names(self) -> list[str]:
        """Class names, ``class_<i>`` where the checkpoint has none."""
        return self.class_names or [f"class_{i}" for i in range(self.config.num_classes)]

    def top_tags(self, clipwise: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(name, score)`` per clip from a ``(batch, classes)`` clipwise output."""
        names = self.names
        order = np.argsort(-clipwise, axis=1)[:, :k]
        return [[(names[i], float(row[i])) for i in idx] for row, idx in zip(clipwise, order)]

    # ------------------------------------------------------------------ audio of any length

    def _batch_shape(self, n: int) -> int:
        """Pad a batch of ``n`` windows to 1, 4, 16, ... (<= batch_size): few programs, little waste."""
        size = 1
        while size < min(n, self.batch_size):
            size *= 4
        return min(size, max(self.batch_size, 1))

    def _run_windows(self, win: windowing.Windows, rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Stacked :meth:`Windows.prepare` rows through the model (batch padded to few shapes)."""
        program = self._window_programs.get(win)
        if program is None:
            program = jax.jit(lambda state, inputs: win.forward(nnx.merge(self._graphdef, state), inputs))
            self._window_programs[win] = program
        size = self._batch_shape(len(rows))
        inputs = {}
        for key in rows[0]:
            stacked = np.zeros((size,) + rows[0][key].shape, rows[0][key].dtype)
            for j, row in enumerate(rows):
                stacked[j] = row[key]
            inputs[key] = jnp.asarray(stacked)
        out = jax.device_get(program(self._state, inputs))
        return {k: np.asarray(v[:len(rows)]) for k, v in out.items()}

    def _clip_probabilities(self, clipwise: np.ndarray) -> np.ndarray:
        """Window clip outputs as probabilities: sigmoid already (clip_bce), softmax of logits (clip_ce)."""
        if self.config.loss_type == "clip_ce":
            z = clipwise - clipwise.max(axis=-1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=-1, keepdims=True)
        return clipwise

    def analyse_many(self, recordings: Iterable[tuple[Any, np.ndarray]], *, window_s: float = 10.0,
                     hop_s: float = 5.0, clip_gate: float | None | str = FROM_MODEL, clip_pool: str = "max",
                     frame_features: bool = False) -> Iterator[tuple[Any, "Analysis"]]:
        """Windows of many recordings through the model together; yields ``(key, Analysis)`` in order.

        Args:
          recordings: ``(key, waveform)`` with a mono float32 ``(samples,)`` waveform already at
            :attr:`sample_rate` (longer than ``n_fft // 2`` samples). Consumed lazily: a
            recording's analysis is yielded as soon as its last window has run.
          window_s / hop_s: window length and hop (see ``htsat_jax.inference.windowing``).
          clip_gate: frame maps of a window are zeroed for classes whose window clip output is
            not above the gate before stitching; "model" = the model directory's value.
          clip_pool: recording clip scores = "max" (default) or "mean" over windows.
          frame_features: also keep the token-semantic head input of every window (:meth:`embed`).
        """
        spec = self._require_frames("analyse_many", window_s, hop_s)
        if clip_pool not in windowing.CLIP_POOLS:
            raise ValueError(f"clip_pool must be one of {windowing.CLIP_POOLS}, got {clip_pool!r}")
        gate = self.event_clip_gate if isinstance(clip_gate, str) and clip_gate == FROM_MODEL else clip_gate
        open_recs: collections.deque[_Accumulator] = collections.deque()
        pending: list[tuple[_Accumulator, int, np.ndarray, int]] = []

        def run_pending():
            if pending:
                out = self._run_windows(spec, [row for _, _, row, _ in pending])
                for j, (acc, i, _, length) in enumerate(pending):
                    acc.add(i, length, {k: v[j] for k, v in out.items()})
                pending.clear()
            while open_recs and open_recs[0].complete:
                acc = open_recs.popleft()
                yield acc.key, acc.finish(self._clip_probabilities, clip_pool)

        for key, wave in recordings:
            wave = np.asarray(wave, np.float32)
            if wave.ndim != 1:
                raise AudioInputError(f"{key}: expected a mono (samples,) waveform, got shape {wave.shape}")
            starts = spec.starts(wave.shape[0])
            acc = _Accumulator(key, wave.shape[0], starts, spec, gate, frame_features, self.config.num_classes)
            open_recs.append(acc)
            for i, start in enumerate(starts):
                segment = wave[start:start + spec.window]
                pending.append((acc, i, spec.prepare(segment), segment.shape[0]))
                if len(pending) >= self.batch_size:
                    yield from run_pending()
            if not starts:  # pragma: no cover - starts() always returns at least one window
                yield from run_pending()
        yield from run_pending()

    def _one_recording(self, waveform: Any, sample_rate: int) -> np.ndarray:
        """Validate, resample to the model rate, check the length: mono ``(samples,)``."""
        x = validate_waveform(waveform, sample_rate)
        if x.shape[0] != 1:
            raise AudioInputError(f"pass one recording as (samples,), got {x.shape[0]} rows; for a "
                                  "multichannel recording mix it first (waveform.mean(axis=channel_axis))")
        x = resample(x, int(sample_rate), self.sample_rate)[0]
        if x.shape[0] < self.min_samples:
            raise AudioInputError(f"audio is {x.shape[0] / self.sample_rate * 1000:.1f} ms long; the model "
                                  f"needs at least {self.min_samples / self.sample_rate * 1000:.0f} ms")
        return x

    def analyse(self, waveform: Any, sample_rate: int, **kwargs) -> "Analysis":
        """One recording of any length and rate -> :class:`Analysis` (kwargs of :meth:`analyse_many`)."""
        self._require_frames("analyse")
        x = self._one_recording(waveform, sample_rate)
        return next(iter(self.analyse_many([(None, x)], **kwargs)))[1]

    def _thresholds(self, thresholds: Any) -> np.ndarray | float:
        if thresholds is None or (isinstance(thresholds, str) and thresholds == FROM_MODEL):
            return self.event_thresholds if self.event_thresholds is not None else 0.5
        thr = np.asarray(thresholds, np.float64)
        if thr.ndim > 1 or (thr.ndim == 1 and thr.shape[0] != self.config.num_classes):
            raise ValueError(f"thresholds: a scalar or {self.config.num_classes} values, got shape {thr.shape}")
        return thr

    def detect(self, analysis: "Analysis", *, thresholds: Any = None,
               median_filter_s: float = events_lib.DEFAULT_MEDIAN_FILTER_S) -> list[events_lib.Event]:
        """Events of an :class:`Analysis` (its stitched frame map, median-filtered, thresholded)."""
        self._require_frames("detect")
        return events_lib.detect_events(analysis.framewise, analysis.seconds_per_frame, self.names,
                                        threshold=self._thresholds(thresholds), median_filter_s=median_filter_s,
                                        max_seconds=analysis.duration_s)

    def events(self, waveform: Any, sample_rate: int, *, thresholds: Any = None,
               median_filter_s: float = events_lib.DEFAULT_MEDIAN_FILTER_S,
               clip_gate: float | None | str = FROM_MODEL, window_s: float = 10.0,
               hop_s: float = 5.0) -> list[events_lib.Event]:
        """Timed events ``(label, onset_s, offset_s, score)`` in a recording of any length.

        Args:
          waveform: float ``(samples,)`` in [-1, 1], any length (windowed, see ``windowing``).
          sample_rate: its rate; resampled to the model's.
          thresholds: frame threshold, scalar or per class; None = the model directory's
            ``event_thresholds`` (tuned by the trainer), else 0.5.
          median_filter_s: median filter along time before thresholding (0 = off).
          clip_gate: see :meth:`analyse_many`; "model" = the model directory's.
        """
        self._require_frames("events")
        analysis = self.analyse(waveform, sample_rate, window_s=window_s, hop_s=hop_s, clip_gate=clip_gate)
        return self.detect(analysis, thresholds=thresholds, median_filter_s=median_filter_s)

    def embed(self, waveform: Any, sample_rate: int, *, window_s: float = 10.0,
              hop_s: float = 5.0) -> dict[str, np.ndarray]:
        """Clip and frame embeddings of a recording of any length.

        Returns:
          ``clip (D,)``: ``latent_output`` (mean of the final tokens) averaged over windows.
          ``frames (N, D)``: the token-semantic head input (``tscam_conv`` input, averaged over its
          frequency rows), ``head_time_steps`` (32) rows per window, windows in order.
          ``frame_times (N, 2)``: start/end seconds of each row in the recording. A window row
          ``i`` covers the window's stretched frames ``[i, i + 1) * target_frames / 32``; for a
          recording shorter than the window the model sees it tiled R times and rows run over
          the tiled input (times up to R x its duration).
          ``windows (W, D)``: ``latent_output`` of each window; ``window_starts_s (W,)``.
        """
        self._require_frames("embed")
        a = self.analyse(waveform, sample_rate, window_s=window_s, hop_s=hop_s, clip_gate=None,
                         frame_features=True)
        return {"clip": a.latent, "frames": a.frame_features, "frame_times": a.frame_times,
                "windows": a.latent_windows, "window_starts_s": a.window_starts_s}

    # ------------------------------------------------------------------ files

    def iter_tag_files(self, paths: Iterable[str], *, top_k: int = 5, window_s: float = 10.0, hop_s: float = 5.0,
                       thresholds: Any = None, median_filter_s: float = events_lib.DEFAULT_MEDIAN_FILTER_S,
                       clip_gate: float | None | str = FROM_MODEL, clip_pool: str = "max",
                       keep_waveform: bool = False) -> Iterator["FileResult"]:
        """Tag audio files, many windows per forward pass. Yields one :class:`FileResult` per path:
        unreadable files as soon as they fail (``error`` set), the others in order when done."""
        from htsat_jax.data import audio as audio_io

        self._require_frames("iter_tag_files", window_s, hop_s)
        self._thresholds(thresholds)  # fail early on a bad threshold
        failed: list[FileResult] = []
        decoded: dict[int, Any] = {}

        def readable():
            for i, path in enumerate(paths):
                try:
                    audio = audio_io.load_mono(path, self.sample_rate)
                    if audio.waveform.shape[0] < self.min_samples:
                        raise AudioInputError(f"too short: {audio.source_duration_s * 1000:.1f} ms; the model "
                                              f"needs at least {self.min_samples / self.sample_rate * 1000:.0f} ms")
                except (audio_io.AudioDecodeError, AudioInputError, OSError, ValueError) as e:
                    reason = e.reason if isinstance(e, audio_io.AudioDecodeError) else str(e)
                    failed.append(FileResult(i, os.fspath(path), None, f"{type(e).__name__}: {reason}"))
                    continue
                decoded[i] = (os.fspath(path), audio)
                yield i, audio.waveform

        for i, analysis in self.analyse_many(readable(), window_s=window_s, hop_s=hop_s, clip_gate=clip_gate,
                                             clip_pool=clip_pool):
            while failed:
                yield failed.pop(0)
            path, audio = decoded.pop(i)
            result = self._file_record(path, audio, analysis, top_k=top_k, thresholds=thresholds,
                                       median_filter_s=median_filter_s, clip_pool=clip_pool)
            yield FileResult(i, path, result, None, analysis, audio.waveform if keep_waveform else None)
        while failed:
            yield failed.pop(0)

    def tag_file(self, path: str, *, top_k: int = 5, **kwargs) -> dict[str, Any]:
        """Tags and events of one audio file (any format soundfile/librosa reads, any rate, any channels).

        Returns:
          a JSON-ready dict: ``file``, ``duration_s``, ``source_sample_rate``, ``source_channels``,
          ``notes`` (resampling / channel mixing / windowing done), ``windows``, ``tags``
          (top ``top_k`` ``{label, index, score}``) and ``events`` (``{label, onset_s, offset_s,
          score}``). kwargs: those of :meth:`iter_tag_files`.

        Raises:
          AudioInputError: the file cannot be read or is too short.
        """
        self._require_frames("tag_file")
        result = next(iter(self.iter_tag_files([path], top_k=top_k, **kwargs)))
        if result.error:
            raise AudioInputError(result.error)
        return result.record

    def _file_record(self, path, audio, analysis: "Analysis", *, top_k, thresholds, median_filter_s,
                     clip_pool) -> dict[str, Any]:
        notes = []
        if audio.source_rate != self.sample_rate:
            notes.append(f"resampled {audio.source_rate} Hz -> {self.sample_rate} Hz")
        if audio.source_channels > 1:
            notes.append(f"mixed {audio.source_channels} channels to mono (mean)")
        spec = analysis.spec
        short = spec.short_note(analysis.num_samples) if len(analysis.window_starts) == 1 else None
        if short:
            notes.append(short)
        if len(analysis.window_starts) > 1:
            notes.append(f"{len(analysis.window_starts)} windows of {spec.window / spec.sample_rate:g} s, hop "
                         f"{spec.hop / spec.sample_rate:g} s; clip scores = {clip_pool} over windows, frame "
                         "maps averaged where windows overlap")
        names = self.names
        order = np.argsort(-analysis.clip_scores)[:top_k]
        found = self.detect(analysis, thresholds=thresholds, median_filter_s=median_filter_s)
        return {
            "file": path,
            "duration_s": round(audio.source_duration_s, 4),
            "source_sample_rate": int(audio.source_rate),
            "source_channels": int(audio.source_channels),
            "notes": notes,
            "windows": {"count": len(analysis.window_starts), "starts_s": [round(s, 4) for s in analysis.window_starts_s],
                        "tiled": analysis.tiled},
            "tags": [{"label": names[c], "index": int(c), "score": round(float(analysis.clip_scores[c]), 6)}
                     for c in order],
            "events": [{"label": e.label, "onset_s": e.onset_s, "offset_s": e.offset_s, "score": round(e.score, 6)}
                       for e in found],
        }


@dataclasses.dataclass
class Analysis:
    """Model outputs of one recording, windows stitched (see ``htsat_jax.inference.windowing``).

    Attributes:
      num_samples: length at the model rate.
      spec: the windowing used.
      window_starts: start sample of each window.
      tiled: R, how many times a recording shorter than the window was tiled (1 otherwise).
      clipwise_windows: ``(W, classes)`` raw ``clipwise_output`` of each window.
      clip_scores: ``(classes,)`` probabilities pooled over windows (max or mean); for a clip_ce
        model, softmax of each window's logits.
      framewise: ``(1 + num_samples // hop_length, classes)`` stitched frame map (clip-gated if
        a gate was used); frame ``g`` at ``g * seconds_per_frame`` seconds.
      latent: ``(D,)`` mean of the windows' ``latent_output``; latent_windows ``(W, D)``.
      frame_features / frame_times: see :meth:`AudioTagger.embed` (None unless asked for).
    """

    num_samples: int
    spec: windowing.Windows
    window_starts: list[int]
    tiled: int
    clipwise_windows: np.ndarray
    clip_scores: np.ndarray
    framewise: np.ndarray
    latent: np.ndarray
    latent_windows: np.ndarray
    frame_features: np.ndarray | None = None
    frame_times: np.ndarray | None = None

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.spec.sample_rate

    @property
    def seconds_per_frame(self) -> float:
        return self.spec.seconds_per_frame

    @property
    def window_starts_s(self) -> np.ndarray:
        return np.asarray(self.window_starts, np.float64) / self.spec.sample_rate


@dataclasses.dataclass
class FileResult:
    """One file of :meth:`AudioTagger.iter_tag_files`: ``record`` (JSON-ready) or ``error``."""

    index: int
    path: str
    record: dict[str, Any] | None
    error: str | None
    analysis: Analysis | None = None
    waveform: np.ndarray | None = None  # mono at the model rate, when keep_waveform


class _Accumulator:
    """Collects a recording's window outputs as batches come back."""

    def __init__(self, key, num_samples: int, starts: list[int], spec: windowing.Windows,
                 gate: float | None, keep_features: bool, num_classes: int):
        self.key, self.num_samples, self.starts, self.spec = key, num_samples, starts, spec
        self.gate, self.keep_features = gate, keep_features
        self.stitcher = windowing.Stitcher(spec.num_frames(num_samples), num_classes)
        self.clip = [None] * len(starts)
        self.latent = [None] * len(starts)
        self.features = [None] * len(starts)
        self.length = min(num_samples, spec.window)  # samples of every window of this recording
        self.done = 0

    @property
    def complete(self) -> bool:
        return self.done == len(self.starts)

    def add(self, i: int, length: int, out: dict[str, np.ndarray]) -> None:
        local = self.spec.local_frames(out["framewise_output"], length)
        if self.gate is not None:
            local = local * (out["clipwise_output"] > self.gate)[None, :]
        self.stitcher.add(self.starts[i] // self.spec.frame_hop, local)
        self.clip[i], self.latent[i] = out["clipwise_output"], out["latent_output"]
        if self.keep_features:
            self.features[i] = out["frame_features"]
        self.done += 1

    def finish(self, probabilities, clip_pool: str) -> Analysis:
        clip = np.stack(self.clip)
        latent = np.stack(self.latent)
        features = times = None
        if self.keep_features:
            features = np.concatenate(self.features)
            steps = self.features[0].shape[0]
            local = self.spec.feature_intervals(self.length, steps) * self.spec.seconds_per_frame
            times = np.concatenate([local + s / self.spec.sample_rate for s in self.starts])
        return Analysis(
            num_samples=self.num_samples, spec=self.spec, window_starts=list(self.starts),
            tiled=self.spec.tiled(self.length), clipwise_windows=clip,
            clip_scores=windowing.pool_clip(probabilities(clip), clip_pool), framewise=self.stitcher.result(),
            latent=latent.mean(axis=0), latent_windows=latent, frame_features=features, frame_times=times)
