"""How a run is scored: one :class:`Evaluator`, built once per run, used by the training loop, the
final test, ``--config.mode=evaluate`` and ``tools/evaluate_ensemble.py``.

It owns the eval data of the config, the jitted prediction programs (test-time shifts, DESED-style
event class groups, on-device resampling from the data's rate to the model's), and the metrics:
tagging (mAP, d', accuracy), event-based F1 of the frame maps with a tuned frame threshold, and
the event-map plots. Labels and events stay on the host: the programs return model outputs only.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from htsat_jax import models
from htsat_jax.data import experiment
from htsat_jax.data.resample import resample_fft
from htsat_jax.evaluation import metrics
from htsat_jax.inference import events as events_lib
from htsat_jax.training import sharding
from htsat_jax.utils import paths

logger = logging.getLogger("htsat_jax")

PCM_SCALE = 32768.0  # int16 PCM -> [-1, 1)
# Clip-level metrics beyond the defaults (mAP, d', accuracy), named in config.eval_metrics.
EXTRA_METRICS = {"lwlrap": metrics.lwlrap, "pr_auc": metrics.micro_pr_auc}
# Ground truth the host keeps from each batch (the programs never see it).
TRUTH_KEYS = ("target", "label", "events")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What to score and how (from the config and the model)."""

    multi_label: bool
    class_names: list[str] | None = None
    event_class_names: list[str] | None = None
    event_thresholds: Any = 0.5
    event_clip_gate: float | None = None
    seconds_per_step: float | None = None
    clip_seconds: float | None = None
    psds_scenarios: tuple[int, ...] = ()
    extra_metrics: tuple[str, ...] = ()  # of EXTRA_METRICS
    chunk: tuple[int, int] | None = None  # (size, hop) in samples at the data's rate: chunked evaluation

    @property
    def events(self) -> bool:
        return self.event_class_names is not None


def waveform_for_model(batch_waveform: jax.Array, data_rate: int, model_rate: int) -> jax.Array:
    """int16 PCM ``(batch, samples)`` at the data's rate -> float waveform at the model's rate."""
    return resample_fft(batch_waveform.astype(jnp.float32) / PCM_SCALE, data_rate, model_rate)


def chunk_waveforms(waveform: jax.Array, length: jax.Array, size: int, hop: int) -> tuple[jax.Array, jax.Array]:
    """Clips ``(B, S)`` with ``length (B,)`` real samples -> chunks ``(B, K + 1, size)`` and
    ``valid (B, K + 1)``: the chunks every ``hop`` samples that lie inside the clip and, when that
    grid misses the clip's end, one more chunk ending at the end (LEAN_YAMNET_SPEC §5.7, as
    ``lean.chunk_plan``: no chunk is padded); a clip shorter than ``size`` is tiled to fill its one
    chunk. The last candidate is the end-aligned one (``K = 1 + (S - size) // hop`` grid starts)."""
    num = 1 + max(0, waveform.shape[1] - size) // hop
    length = jnp.maximum(length, 1)
    grid = jnp.broadcast_to(jnp.arange(num) * hop, (length.shape[0], num))
    tail = jnp.maximum(length - size, 0)[:, None]
    starts = jnp.concatenate([grid, tail], axis=1)  # (B, K + 1)
    index = starts[:, :, None] + jnp.arange(size)[None, None, :]  # (B, K + 1, size)
    tiled = length[:, None, None] < size
    index = jnp.where(tiled, index % length[:, None, None], jnp.minimum(index, waveform.shape[1] - 1))
    chunks = jnp.take_along_axis(waveform[:, None, :], index, axis=2)
    in_clip = (grid == 0) | (grid + size <= length[:, None])
    last_grid = jnp.max(jnp.where(in_clip, grid, 0), axis=1, keepdims=True)
    needs_tail = (length[:, None] > size) & (last_grid + size < length[:, None])
    return chunks, jnp.concatenate([in_clip, needs_tail], axis=1)


def make_predict_fn(graphdef: nnx.GraphDef, *, data_rate: int, model_rate: int,
                    time_shifts: Iterable[int] = (0,), event_groups: Sequence[Sequence[int]] | None = None,
                    frame_outputs: bool = False, chunk: tuple[int, int] | None = None) -> Callable:
    """``(params, rest, waveform, length) -> {"clipwise", ["frames"]}`` in eval mode (pure, for ``jax.jit``).

    Args:
      data_rate / model_rate: the waveform is resampled on device when they differ.
      time_shifts: cumulative left rolls of the waveform (at the data's rate) whose clipwise outputs
        are averaged (the official AudioSet test: 0, 100, 300, ..., 4500 samples); ``(0,)`` = one pass.
      event_groups: per event class, the model classes it gathers; clip scores and frame maps are
        the max over each group (DESED from an AudioSet model: "any member above threshold").
      frame_outputs: also return the frame map of the unshifted pass.
      chunk: ``(size, hop)`` samples: the model sees chunks of each clip (:func:`chunk_waveforms`) and
        the clip score is the mean of its valid chunks' scores (no frame map then).
    """
    shifts = tuple(int(s) for s in time_shifts)

    def run(model, x, length):
        if chunk is None:
            return model(waveform_for_model(x, data_rate, model_rate))
        chunks, valid = chunk_waveforms(x, length, *chunk)
        b, k, n = chunks.shape
        out = model(waveform_for_model(chunks.reshape(b * k, n), data_rate, model_rate))
        scores = out["clipwise_output"].reshape(b, k, -1)
        weights = valid.astype(scores.dtype)[..., None]
        return {"clipwise_output": (scores * weights).sum(1) / weights.sum(1)}

    def predict(params, rest, waveform, length):
        model = nnx.merge(graphdef, jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, rest))
        clip, frames = None, None
        for i, s in enumerate(shifts):
            x = jnp.roll(waveform, -s, axis=1) if s else waveform
            out = run(model, x, length)
            clip = out["clipwise_output"] if clip is None else clip + out["clipwise_output"]
            if i == 0:
                frames = out.get("framewise_output")
        clip = clip / len(shifts)
        if event_groups is not None:
            # Each event class scores as its most confident member class (official DESED rule).
            clip = jnp.stack([clip[..., jnp.asarray(g)].max(-1) for g in event_groups], axis=-1)
            if frames is not None:
                frames = jnp.stack([frames[..., jnp.asarray(g)].max(-1) for g in event_groups], axis=-1)
        result = {"clipwise": clip}
        if frame_outputs:
            result["frames"] = frames
        return result

    return predict


def collect_predictions(predict: Callable[[np.ndarray], Mapping], eval_data: Iterable, mesh, *,
                        progress: str | None = None, total: int | None = None) -> dict[str, np.ndarray]:
    """Run ``predict`` (global waveform and length batches -> outputs) over every eval batch; returns host arrays
    of the real (unmasked) rows, the model outputs next to the batch's ground truth."""
    chunks: dict[str, list[np.ndarray]] = {}
    iterator = eval_data
    if progress and jax.process_index() == 0:
        from tqdm import tqdm
        iterator = tqdm(eval_data, desc=progress, total=total, unit="batch", leave=False)
    for local in iterator:
        inputs = sharding.global_batch({"waveform": local["waveform"], "length": local["length"]}, mesh)
        out = predict(inputs["waveform"], inputs["length"])
        host = {k: np.asarray(v) for k, v in out.items()}  # replicated outputs: addressable everywhere
        truth = _global_truth(local)
        keep = truth.pop("mask").astype(bool)
        for k, v in {**host, **truth}.items():
            chunks.setdefault(k, []).append(v[keep])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def _global_truth(local: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The whole global batch's labels on every process (each process read only its rows)."""
    truth = {k: np.asarray(local[k]) for k in (*TRUTH_KEYS, "mask") if k in local}
    if jax.process_count() == 1:
        return truth
    from jax.experimental import multihost_utils
    gathered = multihost_utils.process_allgather(truth, tiled=True)
    return {k: np.asarray(v) for k, v in gathered.items()}


def score(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, float]:
    """Tagging metrics (mAP, d', accuracy) and, for strong labels, event-based F1."""
    result = metrics.tagging_metrics(preds["target"], preds["clipwise"], multi_label=settings.multi_label)
    for name in settings.extra_metrics:
        result[name] = float(EXTRA_METRICS[name](preds["target"], preds["clipwise"]))
    if settings.events:
        result.update(event_scores(preds, settings))
        for scenario in settings.psds_scenarios:
            result[f"psds{scenario}"] = psds_score(preds, settings, scenario)
    result["num_examples"] = int(preds["target"].shape[0])
    return result


def psds_score(preds: Mapping[str, np.ndarray], settings: EvalSettings, scenario: int) -> float:
    """PSDS (DCASE scenario 1 or 2) of the frame maps (clip-gated like the events); NaN, with a
    warning, when a class has no ground-truth event in the split (PSDS is undefined then)."""
    from htsat_jax.evaluation import psds

    frames = preds["frames"]
    if settings.event_clip_gate is not None:
        frames = frames * (preds["clipwise"] > settings.event_clip_gate)[:, None, :]
    truth = ground_truth(preds, settings)
    try:
        return psds.psds(frames, [truth[k] for k in sorted(truth)], settings.seconds_per_step,
                         settings.event_class_names, scenario=scenario, durations=settings.clip_seconds)["psds"]
    except ValueError as e:
        logger.warning("PSDS scenario %d not computed: %s", scenario, e)
        return float("nan")


def detections(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, list[events_lib.Event]]:
    """Events found in every clip's frame map (clip-gated when ``settings.event_clip_gate`` is set)."""
    out = {}
    for i, frame_map in enumerate(preds["frames"]):
        if settings.event_clip_gate is not None:
            frame_map = frame_map * (preds["clipwise"][i] > settings.event_clip_gate)[None, :]
        out[f"clip{i:06d}"] = events_lib.framewise_to_events(
            frame_map, settings.seconds_per_step, settings.event_class_names,
            threshold=settings.event_thresholds, max_seconds=settings.clip_seconds)
    return out


def ground_truth(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, list[events_lib.Event]]:
    names = settings.event_class_names
    return {f"clip{i:06d}": [events_lib.Event(names[int(lab)], float(on), float(off), 1.0)
                             for on, off, lab in rows if lab >= 0]
            for i, rows in enumerate(preds["events"])}


def event_scores(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, float]:
    """Intersection-based event F1 (psds_eval definitions, DTC/GTC 0.5, CTTC 0.3) of the frame maps.

    With ``settings.event_clip_gate``, a class yields events in a clip only when its clip-level
    score exceeds the gate (weak predictions gating strong ones, as DCASE SED baselines do).
    """
    found, truth = detections(preds, settings), ground_truth(preds, settings)
    durations = {clip: settings.clip_seconds for clip in truth}
    f1 = metrics.event_f1(truth, found, durations, class_names=settings.event_class_names)
    out = {"event_f1": float(f1["macro_f1"])}
    out.update({f"event_f1/{k}": float(v) for k, v in f1["f1"].items()})
    return out


def tune_event_threshold(preds: Mapping[str, np.ndarray], settings: EvalSettings,
                         grid: Iterable[float]) -> tuple[float, float]:
    """The frame threshold (one for all classes) with the best event F1 on ``preds``: (thr, F1)."""
    best = (float("nan"), -1.0)
    for thr in grid:
        f1 = event_scores(preds, dataclasses.replace(settings, event_thresholds=np.float64(thr)))["event_f1"]
        if f1 > best[1]:
            best = (float(thr), f1)
    return best


def format_metrics(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()
                     if not isinstance(v, dict) and "/" not in k)


def make_settings(config: ml_collections.ConfigDict, model_cfg: Any, spec, class_names: list[str] | None
                  ) -> EvalSettings:
    """The scoring settings of a run: event scoring needs a model with frame-level output."""
    event_names, step = None, None
    if config.event_eval and config.eval_chunk_seconds:
        raise ValueError("config.event_eval scores frame maps of whole clips; it cannot be combined with "
                         "chunked evaluation (config.eval_chunk_seconds)")
    if config.event_eval:
        step = models.module_of(model_cfg).frame_seconds(
            model_cfg, int(round(spec.clip_seconds * model_cfg.sample_rate)))
        if step is None:
            raise ValueError(f"config.event_eval needs frame-wise output: the {models.name_of(model_cfg)} model "
                             "has none (use a model with frame-level output, e.g. HTS-AT)")
        event_names = list(config.event_class_names or class_names or
                           [f"class_{i}" for i in range(model_cfg.num_classes)])
    return EvalSettings(
        multi_label=spec.multi_label, class_names=class_names, event_class_names=event_names,
        event_thresholds=np.asarray(config.event_thresholds, np.float64),
        event_clip_gate=config.event_clip_gate, seconds_per_step=step, clip_seconds=spec.clip_seconds,
        psds_scenarios=tuple(int(x) for x in config.event_psds_scenarios) if config.event_eval else (),
        extra_metrics=_extra_metrics(config), chunk=_chunk(config, spec.sample_rate))


def _extra_metrics(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    unknown = sorted(set(config.eval_metrics) - set(EXTRA_METRICS))
    if unknown:
        raise ValueError(f"config.eval_metrics: unknown {unknown}; known: {sorted(EXTRA_METRICS)}")
    return tuple(config.eval_metrics)


def _chunk(config: ml_collections.ConfigDict, rate: int) -> tuple[int, int] | None:
    """``config.eval_chunk_seconds`` / ``eval_chunk_hop_seconds`` in samples at the data's rate."""
    if not config.eval_chunk_seconds:
        return None
    size = int(round(config.eval_chunk_seconds * rate))
    hop = int(round((config.eval_chunk_hop_seconds or config.eval_chunk_seconds) * rate))
    if size < 1 or hop < 1:
        raise ValueError(f"eval chunks of {config.eval_chunk_seconds} s every {config.eval_chunk_hop_seconds} s")
    return size, hop


class Evaluator:
    """Scores one model (any weights of it) on the config's splits.

    Args:
      config: the experiment config (splits, folds, shifts, event scoring, plots).
      model_cfg: the model's config; ``graphdef``: its ``nnx`` graph (params and the rest split).
      mesh: the device mesh; ``param_shardings``: ``(params, rest)`` shardings of the weights.
      spec: the eval split's dataset spec; ``class_names``: output names.
    """

    def __init__(self, config: ml_collections.ConfigDict, model_cfg: Any, graphdef: nnx.GraphDef, mesh,
                 param_shardings: tuple[Any, Any], spec, class_names: list[str] | None):
        self.config, self.model_cfg, self.graphdef, self.mesh = config, model_cfg, graphdef, mesh
        self.param_shardings = param_shardings
        self.spec = spec
        self.class_names = class_names
        self.settings = make_settings(config, model_cfg, spec, class_names)
        self.event_groups = ([list(g) for g in config.event_class_groups] if config.event_class_groups else None)
        self._programs: dict[tuple, Callable] = {}
        self._data: dict[str, Any] = {}

    # ---------------------------------------------------------------- programs and data

    def program(self, shifts: Sequence[int] = (0,)) -> Callable:
        """The jitted ``(params, rest, waveform) -> outputs`` for these test-time shifts (cached)."""
        key = tuple(int(s) for s in shifts)
        if key not in self._programs:
            fn = make_predict_fn(self.graphdef, data_rate=self.spec.sample_rate,
                                 model_rate=self.model_cfg.sample_rate, time_shifts=key,
                                 event_groups=self.event_groups, frame_outputs=self.settings.events,
                                 chunk=self.settings.chunk)
            batch = sharding.batch_sharding(self.mesh)
            self._programs[key] = jax.jit(fn, in_shardings=(*self.param_shardings, batch, batch),
                                          out_shardings=sharding.replicated(self.mesh))
        return self._programs[key]

    def data(self, split: str):
        if split not in self._data:
            max_events = self.config.eval_max_events if self.settings.events else 0
            self._data[split] = experiment.make_eval_data(self.config, split, max_events=max_events)
        return self._data[split]

    def predictions(self, params, rest, split: str, *, shifts: Sequence[int] = (0,),
                    progress: bool = True) -> dict[str, np.ndarray]:
        """Host arrays of the model outputs and the ground truth over ``split``."""
        program, data = self.program(shifts), self.data(split)
        return collect_predictions(lambda w, n: program(params, rest, w, n), data, self.mesh,
                                   progress=f"eval {split}" if progress else None, total=len(data))

    # ---------------------------------------------------------------- what the trainer calls

    def evaluate(self, params, rest, split: str | None = None) -> dict[str, float]:
        """Metrics on ``split`` (default ``config.eval_split``), one pass, current thresholds."""
        return score(self.predictions(params, rest, split or self.config.eval_split), self.settings)

    def test(self, params, rest, *, workdir: str | None = None, tune: bool = True) -> dict[str, Any]:
        """The final test: the frame threshold tuned on ``eval_split`` (when a grid is set), then
        ``config.test_split`` with ``config.test_time_shifts``, and the event-map plots."""
        settings, tuned = self.settings, {}
        grid = tuple(self.config.event_threshold_grid or ())
        if tune and settings.events and grid:
            valid = self.predictions(params, rest, self.config.eval_split, progress=False)
            thr, f1 = tune_event_threshold(valid, settings, grid)
            settings = dataclasses.replace(settings, event_thresholds=np.float64(thr))
            tuned = {"event_threshold": thr, "event_threshold_tuned_on": self.config.eval_split,
                     f"{self.config.eval_split}_event_f1_at_threshold": f1}
            logger.info("event threshold %.2f (event F1 %.4f on %s)", thr, f1, self.config.eval_split)
        self.settings = settings  # what inference should use: written to the exported model
        shifts = tuple(self.config.test_time_shifts)
        preds = self.predictions(params, rest, self.config.test_split, shifts=shifts)
        result = {"test_split": self.config.test_split, "test": score(preds, settings), **tuned}
        result["plots"] = self.plots(params, rest, workdir) if workdir else []
        return result

    def export_extra(self) -> dict[str, Any]:
        """What inference should use to turn frame maps into events (stored in the model directory)."""
        if not self.settings.events:
            return {}
        names = self.settings.event_class_names
        return {"event_thresholds": np.broadcast_to(self.settings.event_thresholds, (len(names),)).tolist(),
                "event_clip_gate": self.settings.event_clip_gate}

    def plots(self, params, rest, workdir: str) -> list[str]:
        """PNG event maps of the first ``config.plot_events`` test clips (process 0)."""
        from htsat_jax.evaluation import plots

        count, out = int(self.config.plot_events), []
        settings = self.settings
        if count <= 0 or not settings.events or jax.process_count() > 1:
            return out
        program = self.program((0,))
        for local in self.data(self.config.test_split):
            inputs = sharding.global_batch({"waveform": local["waveform"], "length": local["length"]}, self.mesh)
            pred = jax.device_get(program(params, rest, inputs["waveform"], inputs["length"]))
            for i in range(local["waveform"].shape[0]):
                if len(out) >= count or not local["mask"][i]:
                    break
                one = {"frames": pred["frames"][i:i + 1], "clipwise": pred["clipwise"][i:i + 1],
                       "events": local["events"][i:i + 1]}
                truth = ground_truth(one, settings)["clip000000"]
                found = detections(one, settings)["clip000000"]
                path = paths.join(workdir, f"event_map_{len(out)}.png")
                plots.plot_event_map(path, local["waveform"][i].astype(np.float32) / PCM_SCALE, self.spec.sample_rate,
                                     pred["frames"][i], settings.seconds_per_step, settings.event_class_names,
                                     truth=truth, detections=found, title=f"{self.config.test_split} clip {i}")
                out.append(path)
            if len(out) >= count:
                break
        return out
