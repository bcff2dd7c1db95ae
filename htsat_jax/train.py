"""The trainer: mesh -> data -> model init (born sharded) -> jitted steps -> resume -> loop.

One linear function, :func:`train_and_evaluate`, runs a whole experiment from an ml_collections
config (``configs/*.py``) and a work directory::

    WORKDIR/checkpoints/<step>/   orbax: train state + grain iterator state (resume after preemption)
    WORKDIR/best/<step>/          orbax: weights of the best evaluations by ``config.best_metric``
    WORKDIR/model/                best weights as a model directory (AudioTagger, predict, fine-tuning)
    WORKDIR/metrics.jsonl         one JSON row per log / eval step; TensorBoard in WORKDIR/tensorboard
    WORKDIR/eval_results.json     final test metrics

The same code runs on one CPU, 8 simulated CPU devices, a multi-GPU host or a TPU pod: the mesh
comes from the config, the batch is split over every device, and under ``jax.jit`` bn0 sees the
global batch (the official ``sync_batchnorm``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx, traverse_util
from jax.experimental import multihost_utils

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import events as events_lib
from htsat_jax import input_pipeline, metrics, optim, sharding
from htsat_jax.metric_writer import MetricWriter
from htsat_jax.models.ast import ASTConfig
from htsat_jax.models.htsat import HTSATConfig, sample_mixup_lambda

ModelConfig = HTSATConfig | ASTConfig

logger = logging.getLogger("htsat_jax")

EVAL_RESULTS_FILE = "eval_results.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
MODEL_DIR = "model"
PCM_SCALE = 32768.0  # int16 PCM -> [-1, 1)


# ============================================================================ config -> model


def model_config(config: ml_collections.ConfigDict, num_classes: int | None = None) -> ModelConfig:
    """The model config described by ``config.model`` (``num_classes`` filled from the data):
    an ``ASTConfig`` when ``config.model.model_type == "ast"``, else an ``HTSATConfig``."""
    fields = config.model.to_dict()
    if fields.get("num_classes") is None:
        if num_classes is None:
            raise ValueError("config.model.num_classes is None and no dataset gave a class count")
        fields["num_classes"] = int(num_classes)
    return ckpt_lib.config_from_dict(fields)


def compute_dtype(config: ml_collections.ConfigDict):
    name = config.get("dtype", "float32")
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"config.dtype must be 'float32' or 'bfloat16', got {name!r}")
    return None if name == "float32" else jnp.bfloat16


def _split(model: nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def abstract_graphdef(model_cfg: ModelConfig, dtype) -> nnx.GraphDef:
    cls = ckpt_lib.model_class(model_cfg)
    return _split(nnx.eval_shape(lambda: cls(model_cfg, rngs=nnx.Rngs(0), dtype=dtype)))[0]


# ============================================================================ initial weights


@dataclasses.dataclass
class InitReport:
    source: str
    loaded: list[str]
    reinitialised: list[str]

    def summary(self) -> str:
        return (f"initialised from {self.source}: {len(self.loaded)} tensors loaded, "
                f"{len(self.reinitialised)} left at their initial values"
                + (f" ({', '.join(self.reinitialised[:6])}{' ...' if len(self.reinitialised) > 6 else ''})"
                   if self.reinitialised else ""))


_ARCH_FIELDS = ("embed_dim", "depths", "num_heads", "window_size", "spec_size", "patch_size",
                "patch_stride", "mlp_ratio", "frontend")


def read_init_weights(path: str) -> tuple[ModelConfig, dict]:
    """A whole model's weights: a model directory of this project, an official HTS-AT ``.ckpt`` or an
    official / transformers AST checkpoint."""
    if ckpt_lib.is_model_dir(path):
        cfg, weights, _ = ckpt_lib.load_weights(path)
        return cfg, jax.tree.map(np.asarray, ckpt_lib.normalise_keys(weights))
    from htsat_jax import ast_convert
    if os.path.isdir(path) and ast_convert.is_hf_model_dir(path):
        return ast_convert.load_ast_checkpoint(path)
    if os.path.isfile(path):
        from htsat_jax import convert
        obj = convert.read_torch_file(path)
        if ast_convert.is_ast_object(obj):
            return ast_convert.convert_ast_object(obj, path)
        return convert.convert_torch_object(obj, path)
    raise FileNotFoundError(f"config.init_from={path!r}: no model directory (with config.json) or "
                            "checkpoint file there")


def merge_init_weights(init: Mapping, source_cfg: HTSATConfig, target_cfg: HTSATConfig,
                       loaded: Mapping, source: str) -> tuple[dict, InitReport]:
    """Copy ``loaded`` into the freshly initialised pure dict ``init``.

    The architectures must agree; when the class count differs, the token-semantic head
    (``tscam_conv``) keeps its fresh initialisation (the official fine-tuning pops ``head.*`` and
    ``tscam_conv.*``).
    """
    diffs = [f"{f}: checkpoint {getattr(source_cfg, f)} vs config {getattr(target_cfg, f)}"
             for f in _ARCH_FIELDS if getattr(source_cfg, f) != getattr(target_cfg, f)]
    if diffs:
        raise ValueError(f"config.init_from={source} does not match config.model: " + "; ".join(diffs))
    replace_head = source_cfg.num_classes != target_cfg.num_classes
    flat_init = traverse_util.flatten_dict(init)
    flat_loaded = traverse_util.flatten_dict(ckpt_lib.normalise_keys(dict(loaded)))
    out, taken, fresh = {}, [], []
    for key, value in flat_init.items():
        if replace_head and key[0] == "tscam_conv":
            out[key], _ = value, fresh.append("/".join(map(str, key)))
            continue
        if key not in flat_loaded:
            raise ValueError(f"config.init_from={source}: tensor {'/'.join(map(str, key))} missing")
        got = np.asarray(flat_loaded[key])
        if got.shape != tuple(value.shape):
            raise ValueError(f"config.init_from={source}: {'/'.join(map(str, key))} has shape "
                             f"{got.shape}, the model expects {tuple(value.shape)}")
        out[key] = got.astype(value.dtype)
        taken.append("/".join(map(str, key)))
    return traverse_util.unflatten_dict(out), InitReport(source, taken, fresh)


def initial_weights(config: ml_collections.ConfigDict, model_cfg: HTSATConfig) -> tuple[dict | None, str | None]:
    """Weights to start training from (``config.init_from``) and a summary for the log; (None, None) without.

    A Swin ImageNet checkpoint (Microsoft's ``{'model': ...}`` file) initialises the backbone of a
    fresh model (:mod:`htsat_jax.swin_import`); a model directory or an official HTS-AT ``.ckpt``
    provides every tensor (the head keeps its fresh initialisation when the class count differs).
    """
    path = config.get("init_from")
    if not path:
        return None, None
    fresh = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(
        ckpt_lib.model_class(model_cfg)(model_cfg, rngs=nnx.Rngs(config.seed)))))
    if isinstance(model_cfg, ASTConfig):
        return _initial_ast_weights(path, model_cfg, fresh)
    from htsat_jax import convert, swin_import
    if ckpt_lib.is_model_dir(path) or not os.path.isfile(path):
        src_cfg, loaded = read_init_weights(path)
    else:
        obj = convert.read_torch_file(path)  # read once, then dispatch on its layout
        if swin_import.is_swin_state(obj):
            weights, swin_report = swin_import.import_swin_state_dict(
                swin_import.swin_state_from_object(obj, path), model_cfg, fresh, source=path)
            return weights, swin_report.summary()
        src_cfg, loaded = convert.convert_torch_object(obj, path)
    weights, report = merge_init_weights(fresh, src_cfg, model_cfg, loaded, path)
    return weights, report.summary()


def _initial_ast_weights(path: str, model_cfg: ASTConfig, fresh: Mapping) -> tuple[dict, str]:
    """AST start: a model directory of this project, or a file :func:`htsat_jax.ast_convert.load_pretrained`
    reads (DeiT ImageNet ``.pth``, an official AST ``.pth``, a transformers AST).

    A model directory with the same geometry and classes gives every tensor (continue or re-run);
    otherwise it goes through the official ``audioset_pretrain`` adaptation like an official file
    (position embedding cut / interpolated to the new grid, fresh head), e.g. the AudioSet AST
    (1024 frames) -> ESC-50 (512 frames).
    """
    from htsat_jax import ast_convert
    if ckpt_lib.is_model_dir(path):
        src_cfg, loaded, _ = ckpt_lib.load_weights(path)
        if not isinstance(src_cfg, ASTConfig):
            raise ValueError(f"config.init_from={path} holds an HTS-AT; config.model is an AST")
        loaded = jax.tree.map(np.asarray, ckpt_lib.normalise_keys(dict(loaded)))
        geometry = ("embed_dim", "depth", "num_heads", "patch_size", "fstride", "tstride", "input_tdim",
                    "input_fdim", "num_classes")
        if all(getattr(src_cfg, f) == getattr(model_cfg, f) for f in geometry):
            return jax.tree.map(lambda f, w: w.astype(f.dtype), fresh, loaded), f"initialised from {path}: every tensor"
        weights, report = ast_convert.import_pretrained_state_dict(
            ast_convert.export_state_dict(loaded, src_cfg), model_cfg, fresh, source=path,
            source_strides=(src_cfg.fstride, src_cfg.tstride), source_fdim=src_cfg.input_fdim)
        return weights, report.summary()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config.init_from={path!r}: no model directory (with config.json) or file there")
    weights, report = ast_convert.load_pretrained(path, model_cfg, fresh)
    return weights, report.summary()


# ============================================================================ train state


def create_train_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh, *,
                       seed: int, dtype=None, init_weights: Mapping | None = None):
    """``(graphdef, state, shardings)``: the train state born sharded on ``mesh``.

    ``state = {"step", "params", "rest" (BatchNorm statistics), "opt_state"}``.
    ``init_weights`` (a pure dict of the whole model) replaces the random initialisation.
    """
    graphdef = abstract_graphdef(model_cfg, dtype)

    def init(weights):
        model = ckpt_lib.model_class(model_cfg)(model_cfg, rngs=nnx.Rngs(seed), dtype=dtype)
        if weights is not None:
            state = nnx.state(model)
            nnx.replace_by_pure_dict(state, weights)
            nnx.update(model, state)
        _, params, rest = _split(model)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "rest": rest,
                "opt_state": tx.init(params)}

    abstract = jax.eval_shape(init, init_weights)
    shardings = sharding.state_shardings(abstract, mesh)
    state = jax.jit(init, out_shardings=shardings)(init_weights)
    return graphdef, state, shardings


def merged_model(graphdef, state) -> nnx.Module:
    # Fresh Variable objects at the caller's trace level (inside grad/jit), see flax TraceContextError.
    return nnx.merge(graphdef, jax.tree.map(lambda a: a, state["params"]),
                     jax.tree.map(lambda a: a, state["rest"]))


def model_weights(graphdef, state) -> dict:
    """Pure dict of every model variable (global jax arrays), as ``checkpoint.save_weights`` takes it."""
    return nnx.to_pure_dict(nnx.state(nnx.merge(graphdef, state["params"], state["rest"])))


# ============================================================================ steps


def clip_loss(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], loss_type: str) -> jax.Array:
    """Official losses: ``clip_bce`` = BCE on probabilities with logs clamped at -100 (torch
    ``F.binary_cross_entropy``); ``clip_ce`` = softmax cross-entropy on the clip logits."""
    pred = outputs["clipwise_output"].astype(jnp.float32)
    target = batch["target"].astype(jnp.float32)
    if loss_type == "clip_bce":
        log_p = jnp.maximum(jnp.log(pred), -100.0)
        log_1mp = jnp.maximum(jnp.log1p(-pred), -100.0)
        return -jnp.mean(target * log_p + (1.0 - target) * log_1mp)
    if loss_type == "clip_ce":
        labels = batch["label"] if "label" in batch else jnp.argmax(target, axis=-1)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pred, labels))
    raise ValueError(f"unknown loss_type {loss_type!r}")


def make_train_step(graphdef, tx: optax.GradientTransformation, schedule, *, loss_type: str,
                    mixup_alpha: float | None, mixup_prob: float = 1.0) -> Callable:
    """``(state, batch, key) -> (state, metrics)``; pure, for ``jax.jit``.

    ``batch["waveform"]`` is int16 PCM ``(batch, samples)``; the per-step key is
    ``fold_in(key, step)`` so a resumed run draws the same randomness. With ``mixup_alpha`` each clip
    is mixed with weight ``Beta(alpha, alpha)`` with probability ``mixup_prob`` (else weight 1).
    """

    def train_step(state, batch, key):
        step_key = jax.random.fold_in(key, state["step"])
        mix_key, fwd_key = jax.random.split(step_key)
        waveform = batch["waveform"].astype(jnp.float32) / PCM_SCALE
        lam = None
        if mixup_alpha:
            lam_key, pick_key = jax.random.split(mix_key)
            lam = sample_mixup_lambda(lam_key, waveform.shape[0], mixup_alpha)
            if mixup_prob < 1.0:  # AST recipe: only some clips are mixed
                lam = jnp.where(jax.random.uniform(pick_key, lam.shape) < mixup_prob, lam, 1.0)

        def loss_fn(params, rest):
            model = merged_model(graphdef, {"params": params, "rest": rest})
            out = model(waveform, train=True, key=fwd_key, mixup_lambda=lam)
            return clip_loss(out, batch, loss_type), _split(model)[2]

        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], state["rest"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new_state = {"step": state["step"] + 1, "params": params, "rest": new_rest, "opt_state": opt_state}
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads),
                           "learning_rate": schedule(state["step"])}

    return train_step


def make_predict_fn(graphdef, *, time_shifts: Iterable[int] = (0,),
                    event_groups: list[list[int]] | None = None,
                    frame_outputs: bool = False) -> Callable:
    """``(state, batch) -> outputs`` in eval mode.

    Args:
      time_shifts: cumulative left rolls of the waveform whose clipwise outputs are averaged (the
        official AudioSet test: 0, 100, 300, ..., 4500 samples); ``(0,)`` = one pass.
      event_groups: per event class, the model classes it gathers; the clip scores and frame map
        returned are the max over each group (DESED from an AudioSet model: "any member above
        threshold").
        None with ``frame_outputs`` returns the model's frame map itself.
    """
    shifts = tuple(int(s) for s in time_shifts)

    def predict(state, batch):
        model = merged_model(graphdef, state)
        waveform = batch["waveform"].astype(jnp.float32) / PCM_SCALE
        clip = None
        frames = None
        for i, s in enumerate(shifts):
            out = model(jnp.roll(waveform, -s, axis=1) if s else waveform)
            clip = out["clipwise_output"] if clip is None else clip + out["clipwise_output"]
            if i == 0:
                frames = out.get("framewise_output")  # None for the AST
        clip = clip / len(shifts)
        if event_groups is not None:
            # Each event class scores as its most confident member class (official DESED rule).
            clip = jnp.stack([clip[..., jnp.asarray(g)].max(-1) for g in event_groups], axis=-1)
            frames = jnp.stack([frames[..., jnp.asarray(g)].max(-1) for g in event_groups], axis=-1)
        result = {"clipwise": clip}
        if frame_outputs or event_groups is not None:
            result["frames"] = frames
        for key in ("target", "mask", "label", "events"):
            if key in batch:
                result[key] = batch[key]
        return result

    return predict


# ============================================================================ evaluation


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What to score and how (from the config)."""

    multi_label: bool
    class_names: list[str] | None = None
    event_class_names: list[str] | None = None
    event_thresholds: Any = 0.5
    event_clip_gate: float | None = None
    seconds_per_step: float | None = None
    clip_seconds: float | None = None

    @property
    def events(self) -> bool:
        return self.event_class_names is not None


def collect_predictions(predict: Callable[[Mapping], Mapping], eval_data: Iterable, mesh, *,
                        progress: str | None = None, total: int | None = None) -> dict[str, np.ndarray]:
    """Run ``predict`` over every eval batch; returns host arrays of the real (unmasked) rows."""
    chunks: dict[str, list[np.ndarray]] = {}
    iterator = eval_data
    if progress and jax.process_index() == 0:
        from tqdm import tqdm
        iterator = tqdm(eval_data, desc=progress, total=total, unit="batch", leave=False)
    for local in iterator:
        out = predict(sharding.global_batch(local, mesh))
        host = {k: np.asarray(v) for k, v in out.items()}  # replicated outputs: addressable everywhere
        keep = host.pop("mask").astype(bool)
        for k, v in host.items():
            chunks.setdefault(k, []).append(v[keep])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def score(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, float]:
    """Tagging metrics (mAP, d', accuracy) and, for strong labels, event-based F1."""
    result = metrics.tagging_metrics(preds["target"], preds["clipwise"], multi_label=settings.multi_label)
    if settings.events:
        result.update(event_scores(preds, settings))
    result["num_examples"] = int(preds["target"].shape[0])
    return result


def event_scores(preds: Mapping[str, np.ndarray], settings: EvalSettings) -> dict[str, float]:
    """Intersection-based event F1 (psds_eval definitions, DTC/GTC 0.5, CTTC 0.3) of the frame maps.

    With ``settings.event_clip_gate``, a class yields events in a clip only when its clip-level
    score exceeds the gate (weak predictions gating strong ones, as DCASE SED baselines do).
    """
    names = settings.event_class_names
    detections, truth, durations = {}, {}, {}
    for i, (frame_map, rows) in enumerate(zip(preds["frames"], preds["events"])):
        clip = f"clip{i:06d}"
        if settings.event_clip_gate is not None:
            frame_map = frame_map * (preds["clipwise"][i] > settings.event_clip_gate)[None, :]
        detections[clip] = events_lib.framewise_to_events(
            frame_map, settings.seconds_per_step, names, threshold=settings.event_thresholds,
            max_seconds=settings.clip_seconds)
        truth[clip] = [events_lib.Event(names[int(lab)], float(on), float(off), 1.0)
                       for on, off, lab in rows if lab >= 0]
        durations[clip] = settings.clip_seconds
    f1 = metrics.event_f1(truth, detections, durations, class_names=names)
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


# ============================================================================ preemption


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop checks it (all processes agree) and saves before exit."""

    def __init__(self):
        self._flag = threading.Event()
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        logger.warning("received signal %d: saving a checkpoint and stopping", signum)
        self._flag.set()

    def requested(self) -> bool:
        local = self._flag.is_set()
        if jax.process_count() == 1:
            return local
        return bool(np.any(multihost_utils.process_allgather(np.array([local]))))

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ============================================================================ the experiment


def model_sample_rate(model: Mapping | ModelConfig) -> int:
    """The rate a model takes its waveform at, from its config or the ``config.model`` fields."""
    if isinstance(model, (HTSATConfig, ASTConfig)):
        return int(model.sample_rate)
    if model.get("model_type") == "ast":
        return int(model.get("input_sample_rate") or model["fbank"]["sample_rate"])
    return int(model["frontend"]["sample_rate"])


def _data_kwargs(config) -> dict[str, Any]:
    return dict(dataset=config.dataset, data_dir=os.path.expanduser(config.data_dir),
                builder_config=config.get("builder_config") or None,
                sample_rate=model_sample_rate(config.model))


def eval_settings(config, model_cfg: ModelConfig, spec: input_pipeline.DatasetSpec,
                  class_names: list[str] | None) -> EvalSettings:
    event_names = None
    if config.get("event_eval", False):
        if not isinstance(model_cfg, HTSATConfig):
            raise ValueError("config.event_eval needs frame-wise output: the AST has none (use HTS-AT)")
        event_names = list(config.get("event_class_names") or class_names or
                           [f"class_{i}" for i in range(model_cfg.num_classes)])
    return EvalSettings(
        multi_label=spec.multi_label, class_names=class_names, event_class_names=event_names,
        event_thresholds=np.asarray(config.get("event_thresholds", 0.5), np.float64),
        event_clip_gate=config.get("event_clip_gate"),
        seconds_per_step=(events_lib.step_seconds(model_cfg, spec.clip_samples)
                          if isinstance(model_cfg, HTSATConfig) else float("nan")),
        clip_seconds=spec.clip_seconds)


def make_eval_data(config, split: str, *, folds=None):
    return input_pipeline.make_eval_data(
        **_data_kwargs(config), split=split, global_batch_size=config.eval_batch_size,
        folds=folds, num_threads=config.get("num_threads", input_pipeline.DEFAULT_NUM_THREADS),
        max_events=config.get("eval_max_events", 0) if config.get("event_eval", False) else 0)


def dataset_class_names(config) -> list[str] | None:
    try:
        source, _ = input_pipeline.open_source(**_data_kwargs(config), split=config.eval_split)
    except Exception:  # noqa: BLE001 - names are cosmetic; the pipeline reports real errors
        return None
    features = source.dataset_info.features
    if "label" in features and hasattr(features["label"], "names"):
        return list(features["label"].names)
    names = (source.dataset_info.metadata or {}).get("class_names")
    return list(names) if names else None


def resolve_paths(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """A copy with ``data_dir=""`` resolved to ``WORKDIR/data``."""
    config = ml_collections.ConfigDict(config.to_dict())
    if not config.data_dir:
        config.data_dir = os.path.join(workdir, "data")
    return config


def maybe_prepare_synthetic(config: ml_collections.ConfigDict) -> None:
    """Generate the synthetic_events dataset into ``data_dir`` when asked and missing (process 0)."""
    if not (config.get("prepare_synthetic_data") and config.dataset == "synthetic_events"):
        return
    if jax.process_index() == 0:
        try:
            input_pipeline.open_source(**_data_kwargs(config), split=config.train_split)
        except (FileNotFoundError, ValueError):
            import tfds_builders
            logger.info("generating synthetic_events/%s into %s", config.builder_config or "default",
                        config.data_dir)
            kwargs = {"config": config.builder_config} if config.builder_config else {}
            tfds_builders.build("synthetic_events", data_dir=os.path.expanduser(config.data_dir), **kwargs)
    multihost_utils.sync_global_devices("synthetic data ready")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, return_state: bool = False):
    """Train (resuming from ``workdir`` if it holds checkpoints), evaluate, write results.

    Returns the results dict (also written to ``WORKDIR/eval_results.json``), and with
    ``return_state`` the final train state too (notebooks, tests).
    """
    import orbax.checkpoint as ocp
    import grain

    workdir = os.path.abspath(os.path.expanduser(workdir))
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    config = resolve_paths(config, workdir)
    maybe_prepare_synthetic(config)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2))

    # ---------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    if config.batch_size % mesh.devices.size or config.eval_batch_size % mesh.devices.size:
        raise ValueError(f"batch_size={config.batch_size} and eval_batch_size={config.eval_batch_size} "
                         f"must be multiples of the {mesh.devices.size} devices")
    logger.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), mesh.devices.size,
                jax.process_count())

    # ---------------------------------------------------------------- data
    data_kwargs = _data_kwargs(config)
    train_folds = tuple(config.train_folds) if config.get("train_folds") else None
    eval_folds = tuple(config.eval_folds) if config.get("eval_folds") else None
    num_train = input_pipeline.count_records(**data_kwargs, split=config.train_split, folds=train_folds)
    steps_per_epoch = int(config.get("steps_per_epoch") or max(1, num_train // config.batch_size))
    total_steps = int(config.get("total_steps") or config.num_epochs * steps_per_epoch)
    logger.info("%d training examples: %d steps per epoch, %d steps (%.1f epochs)", num_train,
                steps_per_epoch, total_steps, total_steps / steps_per_epoch)
    train_ds = input_pipeline.make_train_dataset(
        **data_kwargs, split=config.train_split, global_batch_size=config.batch_size,
        seed=int(config.seed) % 2**32, folds=train_folds, balanced=config.get("balanced_sampling"),
        num_threads=config.get("num_threads", input_pipeline.DEFAULT_NUM_THREADS))
    train_iter = iter(train_ds)
    _, spec = input_pipeline.open_source(**data_kwargs, split=config.eval_split)
    class_names = list(config.class_names) if config.get("class_names") else dataset_class_names(config)

    # ---------------------------------------------------------------- model
    model_cfg = model_config(config, spec.num_classes)
    if model_cfg.sample_rate != spec.sample_rate:
        raise ValueError(f"model rate {model_cfg.sample_rate} Hz != data rate {spec.sample_rate} Hz")
    tx, schedule = optim.make_optimizer(
        config.optim, steps_per_epoch=steps_per_epoch,
        num_epochs=max(int(config.num_epochs), math.ceil(total_steps / steps_per_epoch)))
    dtype = compute_dtype(config)
    init_weights, init_summary = initial_weights(config, model_cfg)
    if init_summary:
        logger.info(init_summary)
    graphdef, state, state_sh = create_train_state(model_cfg, tx, mesh, seed=int(config.seed), dtype=dtype,
                                                   init_weights=init_weights)
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
    logger.info("%s %s: %.2f M trainable parameters, %d classes",
                "AST" if isinstance(model_cfg, ASTConfig) else "HTS-AT", config.get("variant", ""),
                num_params / 1e6, model_cfg.num_classes)

    batch_sh = sharding.batch_sharding(mesh)
    repl = sharding.replicated(mesh)
    train_step = jax.jit(
        make_train_step(graphdef, tx, schedule, loss_type=model_cfg.loss_type,
                        mixup_alpha=config.get("mixup_alpha") if config.get("mixup") else None,
                        mixup_prob=float(config.get("mixup_prob", 1.0))),
        in_shardings=(state_sh, batch_sh, repl), out_shardings=(state_sh, repl), donate_argnums=(0,))
    settings = eval_settings(config, model_cfg, spec, class_names)
    event_groups = [list(g) for g in config.event_class_groups] if config.get("event_class_groups") else None
    predict_valid = jax.jit(make_predict_fn(graphdef, event_groups=event_groups,
                                            frame_outputs=settings.events),
                            in_shardings=(state_sh, batch_sh), out_shardings=repl)
    base_key = jax.random.key(int(config.seed))

    # ---------------------------------------------------------------- checkpoints / resume
    ckpt_mngr = ocp.CheckpointManager(
        os.path.join(workdir, CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                             enable_async_checkpointing=config.get("async_checkpointing", True)))
    best_mngr = ocp.CheckpointManager(
        os.path.join(workdir, BEST_DIR),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_best, create=True, best_fn=lambda m: m[config.best_metric],
            best_mode="max", keep_checkpoints_without_metrics=False, enable_async_checkpointing=False))
    start_step = 0
    if ckpt_mngr.latest_step() is not None:
        last = ckpt_mngr.latest_step()
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sh)
        restored = ckpt_mngr.restore(last, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=grain.checkpoint.CheckpointRestore(train_iter)))
        state = restored["state"]
        start_step = int(state["step"])
        logger.info("resumed from %s at step %d", os.path.join(workdir, CHECKPOINT_DIR), start_step)

    saved_steps = set(ckpt_mngr.all_steps())

    def save(step: int, force: bool = False) -> None:
        if step in saved_steps:  # e.g. a signal right after a periodic save
            return
        ckpt_mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(train_iter)),
            force=force)
        saved_steps.add(step)

    writer = MetricWriter(workdir, tensorboard=config.get("tensorboard", True))
    stop = StopSignal()
    best_value, evaluated_steps = None, set()

    def run_eval(step: int) -> dict[str, float]:
        eval_data = make_eval_data(config, config.eval_split, folds=eval_folds)
        preds = collect_predictions(lambda b: predict_valid(state, b), eval_data, mesh,
                                    progress=f"eval {config.eval_split}", total=len(eval_data))
        result = score(preds, settings)
        writer.write(step, {f"eval/{k}": v for k, v in result.items()})
        if config.best_metric in result and step not in best_mngr.all_steps():
            value = float(result[config.best_metric])
            best_mngr.save(step, args=ocp.args.StandardSave({"params": state["params"], "rest": state["rest"]}),
                           metrics={config.best_metric: value if np.isfinite(value) else -np.inf})
        return result

    # ---------------------------------------------------------------- loop
    progress = None
    if is_main and config.get("progress_bar", True):
        from tqdm import tqdm
        progress = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    log_every = max(1, int(config.log_every_steps))
    eval_every = int(config.get("eval_every_steps")
                     or max(1, steps_per_epoch // max(1, int(config.get("evals_per_epoch", 1)))))
    ckpt_every = max(1, int(config.checkpoint_every_steps))
    step, stopped = start_step, False
    window_start, window_clips = time.perf_counter(), 0
    train_metrics: list[dict] = []
    try:
        while step < total_steps:
            try:
                local = next(train_iter)
            except StopIteration:
                logger.warning("training data ended at step %d", step)
                break
            state, m = train_step(state, sharding.global_batch(local, mesh), base_key)
            step += 1
            window_clips += config.batch_size
            train_metrics.append(m)
            if progress is not None:
                progress.update(1)
            if step % log_every == 0 or step == total_steps:
                host = jax.device_get(train_metrics)
                elapsed = time.perf_counter() - window_start
                row = {f"train/{k}": float(np.mean([h[k] for h in host])) for k in host[0]}
                row["train/clips_per_second"] = window_clips / max(elapsed, 1e-9)
                row["train/epoch"] = step / steps_per_epoch
                if not np.isfinite(row["train/loss"]):
                    raise FloatingPointError(f"training loss is {row['train/loss']} at step {step}")
                writer.write(step, row)
                if progress is not None:
                    progress.set_postfix(loss=f"{row['train/loss']:.4f}", lr=f"{row['train/learning_rate']:.2e}",
                                         clips_s=f"{row['train/clips_per_second']:.1f}")
                train_metrics, window_start, window_clips = [], time.perf_counter(), 0
            if step % ckpt_every == 0 or step == total_steps:
                save(step)
            if step % eval_every == 0 or step == total_steps:
                result = run_eval(step)
                evaluated_steps.add(step)
                logger.info("step %d eval: %s", step, _fmt(result))
            # Across processes the check is a host all-gather (a sync point): do it only at log
            # steps there; a single process checks its own flag every step.
            if (jax.process_count() == 1 or step % log_every == 0) and stop.requested():
                save(step, force=True)
                stopped = True
                logger.warning("stopped at step %d after a signal; rerun the same command to resume", step)
                break
        if step not in evaluated_steps and not stopped and step > start_step:
            run_eval(step)
    finally:
        if progress is not None:
            progress.close()
        ckpt_mngr.wait_until_finished()
        stop.restore()

    results: dict[str, Any] = {"step": step, "stopped_early": stopped}
    if not stopped:
        results.update(final_test(config, workdir, mesh, graphdef, state, state_sh, best_mngr, settings,
                                  model_cfg, class_names, event_groups, predict_valid))
        if is_main:
            with open(os.path.join(workdir, EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
        logger.info("test (%s weights, step %d): %s", results["weights"], results["weights_step"],
                    _fmt(results["test"]))
        logger.info("results in %s; model exported to %s%s", os.path.join(workdir, EVAL_RESULTS_FILE),
                    results["model_dir"], f"; event plots: {', '.join(results['plots'])}" if results["plots"] else "")
    ckpt_mngr.close()
    best_mngr.close()
    writer.close()
    return (results, state) if return_state else results


def final_test(config, workdir, mesh, graphdef, state, state_sh, best_mngr, settings, model_cfg,
               class_names, event_groups, predict_valid=None) -> dict[str, Any]:
    """Evaluate on ``config.test_split`` with the weights ``config.test_weights`` picks
    ("best" by ``config.best_metric``, or "last"), and export them as WORKDIR/model."""
    import orbax.checkpoint as ocp

    which = config.get("test_weights", "best")
    chosen_step = int(state["step"])
    if which == "best" and best_mngr.best_step() is not None:
        chosen_step = best_mngr.best_step()
        abstract = {k: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                    state[k], state_sh[k]) for k in ("params", "rest")}
        weights = best_mngr.restore(chosen_step, args=ocp.args.StandardRestore(abstract))
        state = {**state, **weights}
    shifts = tuple(config.get("test_time_shifts", (0,)))
    if shifts == (0,) and predict_valid is not None:
        predict_test = predict_valid  # the same program: no second compilation
    else:
        predict_test = jax.jit(make_predict_fn(graphdef, time_shifts=shifts, event_groups=event_groups,
                                               frame_outputs=settings.events),
                               in_shardings=(state_sh, sharding.batch_sharding(mesh)),
                               out_shardings=sharding.replicated(mesh))
    eval_folds = tuple(config.eval_folds) if config.get("eval_folds") else None
    tuned = {}
    if settings.events and config.get("event_threshold_grid"):
        # Pick the frame threshold on the validation split, then apply it to the test split.
        valid = collect_predictions(lambda b: predict_valid(state, b),
                                    make_eval_data(config, config.eval_split, folds=eval_folds), mesh)
        thr, f1 = tune_event_threshold(valid, settings, config.event_threshold_grid)
        settings = dataclasses.replace(settings, event_thresholds=np.float64(thr))
        tuned = {"event_threshold": thr, "event_threshold_tuned_on": config.eval_split,
                 f"{config.eval_split}_event_f1_at_threshold": f1}
        logger.info("event threshold %.2f (event F1 %.4f on %s)", thr, f1, config.eval_split)
    test_data = make_eval_data(config, config.test_split, folds=eval_folds)
    preds = collect_predictions(lambda b: predict_test(state, b), test_data, mesh,
                                progress=f"test {config.test_split}", total=len(test_data))
    result = score(preds, settings)
    plots = write_event_plots(config, workdir, mesh, predict_test, state, test_data, settings, model_cfg)
    weights = model_weights(graphdef, state)
    model_dir = os.path.join(workdir, MODEL_DIR)
    if jax.process_index() == 0 and os.path.isdir(model_dir):
        import shutil
        shutil.rmtree(model_dir)  # an earlier (pre-resume) export
    multihost_utils.sync_global_devices("old model export removed")
    extra = {"trained_steps": chosen_step, "dataset": config.dataset}
    if settings.events:  # what inference should use to turn frame maps into events
        extra["event_thresholds"] = np.broadcast_to(settings.event_thresholds, (len(settings.event_class_names),)).tolist()
        extra["event_clip_gate"] = settings.event_clip_gate
    ckpt_lib.save_weights(model_dir, model_cfg, weights, class_names=class_names, extra=extra)
    return {"test_split": config.test_split, "weights": which, "weights_step": chosen_step,
            "test": result, **tuned, "plots": plots, "model_dir": model_dir}


def write_event_plots(config, workdir, mesh, predict, state, test_data, settings, model_cfg) -> list[str]:
    """PNG event maps for the first ``config.plot_events`` test clips (process 0)."""
    from htsat_jax import plots

    count, paths = int(config.get("plot_events", 0)), []
    if count <= 0 or not settings.events or jax.process_index() != 0 or jax.process_count() > 1:
        return paths
    for local in test_data:
        out = jax.device_get(predict(state, sharding.global_batch(local, mesh)))
        for i in range(local["waveform"].shape[0]):
            if len(paths) >= count or not local["mask"][i]:
                break
            names = settings.event_class_names
            truth = [events_lib.Event(names[int(l)], float(a), float(b), 1.0)
                     for a, b, l in local["events"][i] if l >= 0]
            gated = out["frames"][i]
            if settings.event_clip_gate is not None:
                gated = gated * (out["clipwise"][i] > settings.event_clip_gate)[None, :]
            found = events_lib.framewise_to_events(gated, settings.seconds_per_step, names,
                                                   threshold=settings.event_thresholds,
                                                   max_seconds=settings.clip_seconds)
            path = os.path.join(workdir, f"event_map_{len(paths)}.png")
            plots.plot_event_map(path, local["waveform"][i].astype(np.float32) / PCM_SCALE, model_cfg.frontend,
                                 out["frames"][i], settings.seconds_per_step, names, truth=truth,
                                 detections=found, title=f"{config.test_split} clip {i}")
            paths.append(path)
        if len(paths) >= count:
            break
    return paths


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """``mode="evaluate"``: score ``config.init_from`` on ``config.test_split``, no training."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    os.makedirs(workdir, exist_ok=True)
    config = resolve_paths(config, workdir)
    maybe_prepare_synthetic(config)
    if not config.get("init_from"):
        raise ValueError("mode='evaluate' needs --config.init_from=MODEL_DIR_OR_CKPT")
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    _, spec = input_pipeline.open_source(**_data_kwargs(config), split=config.test_split)
    model_cfg, weights = read_init_weights(config.init_from)
    if model_cfg.sample_rate != spec.sample_rate:
        raise ValueError(f"{config.init_from} runs at {model_cfg.sample_rate} Hz but "
                         f"{config.dataset} is stored at {spec.sample_rate} Hz")
    graphdef, state, state_sh = create_train_state(model_cfg, optax.identity(), mesh, seed=0,
                                                   dtype=compute_dtype(config),
                                                   init_weights=ckpt_lib.normalise_keys(dict(weights)))
    event_groups = [list(g) for g in config.event_class_groups] if config.get("event_class_groups") else None
    names = list(config.class_names) if config.get("class_names") else dataset_class_names(config)
    settings = eval_settings(config, model_cfg, spec, names)
    predict = jax.jit(make_predict_fn(graphdef, time_shifts=tuple(config.get("test_time_shifts", (0,))),
                                      event_groups=event_groups, frame_outputs=settings.events),
                      in_shardings=(state_sh, sharding.batch_sharding(mesh)), out_shardings=sharding.replicated(mesh))
    test_data = make_eval_data(config, config.test_split,
                               folds=tuple(config.eval_folds) if config.get("eval_folds") else None)
    preds = collect_predictions(lambda b: predict(state, b), test_data, mesh,
                                progress=f"test {config.test_split}", total=len(test_data))
    results = {"checkpoint": config.init_from, "test_split": config.test_split, "test": score(preds, settings)}
    results["plots"] = write_event_plots(config, workdir, mesh, predict, state, test_data, settings, model_cfg)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    logger.info("test: %s", _fmt(results["test"]))
    return results


def _fmt(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()
                     if not isinstance(v, dict) and "/" not in k)


def cross_validate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """The ESC-50 protocol: one run per held-out fold (train on the other folds), mean ± std."""
    folds = [int(f) for f in config.cross_validation_folds]
    per_fold = {}
    for fold in folds:
        fold_cfg = ml_collections.ConfigDict(config.to_dict())
        fold_cfg.eval_folds = (fold,)
        fold_cfg.train_folds = tuple(f for f in folds if f != fold)
        fold_cfg.cross_validation_folds = ()
        logger.info("cross-validation: fold %d of %s", fold, folds)
        per_fold[fold] = train_and_evaluate(fold_cfg, os.path.join(workdir, f"fold_{fold}"))
    metric = config.best_metric
    values = [r["test"][metric] for r in per_fold.values() if "test" in r]
    summary = {"folds": {str(f): r.get("test", {}) for f, r in per_fold.items()},
               f"{metric}_mean": float(np.mean(values)) if values else None,
               f"{metric}_std": float(np.std(values)) if values else None}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return summary
