"""The trainer: mesh -> data -> born-sharded init -> jitted step -> resume -> loop.

One linear function, :func:`train_and_evaluate`, runs a whole experiment from an ml_collections
config (``configs/*.py``) and a work directory (local or ``gs://``)::

    WORKDIR/checkpoints/<step>/   orbax: train state + grain iterator state (resume after preemption)
    WORKDIR/best/<step>/          orbax: weights of the best evaluations by ``config.best_metric``
    WORKDIR/model/                best weights as a model directory (AudioTagger, predict, fine-tuning)
    WORKDIR/metrics.jsonl         one JSON row per log / eval step; TensorBoard in WORKDIR/tensorboard
    WORKDIR/eval_results.json     final test metrics

The trainer never asks which model it trains: ``config.model_name`` picks the module
(``htsat_jax.models``), the evaluation is ``htsat_jax.evaluation.evaluator``. The same code runs on
one CPU, 8 simulated CPU devices, a multi-GPU host or a TPU pod: the mesh comes from the config,
the batch is split over every device, and under ``jax.jit`` BatchNorm sees the global batch (the
official ``sync_batchnorm``). Data stored at another rate than the model's is resampled on device.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import models
from htsat_jax.data import experiment
from htsat_jax.data import pipeline as input_pipeline
from htsat_jax.evaluation import evaluator as evaluator_lib
from htsat_jax.training import optim, sharding
from htsat_jax.training.metric_writer import MetricWriter
from htsat_jax.utils import host_memory, paths

logger = logging.getLogger("htsat_jax")

EVAL_RESULTS_FILE = "eval_results.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
MODEL_DIR = "model"


# ============================================================================ config -> model


def model_config(config: ml_collections.ConfigDict, num_classes: int | None = None,
                 multi_label: bool | None = None) -> Any:
    """The model config that ``config.model_name`` and ``config.model`` describe (``num_classes``
    filled from the data when the config leaves it open).

    Without ``config.model_name`` the model is the one ``config.init_from`` holds (fine-tuning any
    released model: ``configs/finetune.py``), with ``config.model`` fields overriding its own, the
    class count of the data, and -- unless the config sets one -- the loss the data asks for:
    ``clip_ce`` for single-label data, ``clip_bce`` for multi-label.
    """
    fields = config.model.to_dict()
    name = config.model_name
    if name is None:
        if not config.init_from:
            raise ValueError("config.model_name is None: give the model (config.model_name) or a model to start "
                             "from (config.init_from)")
        source = source_model_config(config.init_from)
        name = models.name_of(source)
        fields = {**source.to_dict(), **fields}
        fields.pop("model_type", None)
        if "loss_type" not in config.model and multi_label is not None:
            fields["loss_type"] = "clip_bce" if multi_label else "clip_ce"
    if fields.get("num_classes") is None or (config.model_name is None and "num_classes" not in config.model):
        if num_classes is None:
            raise ValueError("config.model.num_classes is None and no dataset gave a class count")
        fields["num_classes"] = int(num_classes)
    return models.config_from_dict(fields, name=name)


def source_model_config(path: str) -> Any:
    """The model config of a model directory or a released file (what fine-tuning starts from)."""
    path = paths.local_or_remote(path)
    if ckpt_lib.is_model_dir(path):
        return ckpt_lib.config_from_dict(paths.read_json(paths.join(path, ckpt_lib.CONFIG_FILE))["model"])
    return read_model(path)[0]


def best_metric(config: ml_collections.ConfigDict, multi_label: bool) -> str:
    """``config.best_metric``; "auto" = accuracy for single-label data, mAP for multi-label."""
    if config.best_metric == "auto":
        return "mAP" if multi_label else "accuracy"
    return config.best_metric


def compute_dtype(config: ml_collections.ConfigDict):
    if config.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"config.dtype must be 'float32' or 'bfloat16', got {config.dtype!r}")
    return None if config.dtype == "float32" else jnp.bfloat16


def initial_weights(config: ml_collections.ConfigDict, model_cfg: Any) -> tuple[dict | None, str | None]:
    """Weights to start from (``config.init_from``, whatever the model's ``init_from`` accepts) and a
    summary for the log; (None, None) without."""
    if not config.init_from:
        return None, None
    fresh = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(models.build(model_cfg, seed=int(config.seed)))))
    return models.module_of(model_cfg).init_from(paths.local_or_remote(config.init_from), model_cfg, fresh,
                                                 seed=int(config.seed))


# ============================================================================ train state


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Everything a step changes. Saved by orbax as a dict with these four keys."""

    step: jax.Array
    params: Any  # nnx.State of the nnx.Param variables
    rest: Any  # nnx.State of everything else (BatchNorm statistics)
    opt_state: Any

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "params": self.params, "rest": self.rest, "opt_state": self.opt_state}


def create_train_state(model_cfg: Any, tx: optax.GradientTransformation, mesh, *, seed: int, dtype=None,
                       init_weights: Mapping | None = None) -> tuple[nnx.GraphDef, TrainState, TrainState]:
    """``(graphdef, state, shardings)``: the train state born sharded on ``mesh``.

    ``init_weights`` (a pure dict of the whole model) replaces the random initialisation.
    """
    graphdef = nnx.split(models.abstract(model_cfg, dtype=dtype), nnx.Param, ...)[0]

    def init(weights):
        model = models.build(model_cfg, seed=seed, dtype=dtype)
        if weights is not None:
            state = nnx.state(model)
            nnx.replace_by_pure_dict(state, weights)
            nnx.update(model, state)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))

    if init_weights is not None:
        init_weights = ckpt_lib.normalise_keys(dict(init_weights))
    shardings = sharding.state_shardings(jax.eval_shape(init, init_weights), mesh)
    state = jax.jit(init, out_shardings=shardings)(init_weights)
    jax.block_until_ready(state)
    host_memory.release_free_memory()  # the init program's scratch: not part of the training peak
    return graphdef, state, shardings


def merged_model(graphdef: nnx.GraphDef, params: Any, rest: Any) -> nnx.Module:
    """The model from its split state, with fresh Variable objects at the caller's trace level
    (inside grad/jit; otherwise flax refuses BatchNorm updates with a TraceContextError)."""
    return nnx.merge(graphdef, jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, rest))


def model_weights(graphdef: nnx.GraphDef, state: TrainState) -> dict:
    """Pure dict of every model variable (global jax arrays), as ``checkpoint.save_weights`` takes it."""
    return nnx.to_pure_dict(nnx.state(nnx.merge(graphdef, state.params, state.rest)))


# ============================================================================ the step


def trainable_only(tx: optax.GradientTransformation, trainable: str, head: tuple[str, ...],
                   frozen: tuple[str, ...] = ()) -> optax.GradientTransformation:
    """``tx`` restricted to the parameters that learn.

    ``trainable="all"``: every parameter except the top-level entries in ``frozen`` (what the model
    holds fixed for its config, its optional ``frozen(config)``); ``"head"``: only the model's
    classifier (its ``HEAD`` entries), a linear probe. Frozen parameters get no update at all, so
    ``tx``'s weight decay does not shrink them either.
    """
    if trainable not in ("all", "head"):
        raise ValueError(f"config.trainable must be 'all' or 'head', got {trainable!r}")
    if trainable == "head" and not head:
        raise ValueError("config.trainable='head' needs the model module to name its HEAD")
    learns = head if trainable == "head" else None
    if learns is None and not frozen:
        return tx
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()},
                                 lambda params: jax.tree.map(lambda t: "train" if t else "freeze",
                                                             trainable_mask(params, learns, frozen)))


def trainable_mask(params: Any, head: tuple[str, ...] | None, frozen: tuple[str, ...] = ()) -> Any:
    """A bool per parameter leaf: True when it learns (every leaf for ``head=None``, else the
    model's classifier, the top-level entries named in ``head``; never one under ``frozen``)."""
    def learns(path, _):
        name = getattr(path[0], "key", getattr(path[0], "name", None))
        return (head is None or name in head) and name not in frozen

    return jax.tree_util.tree_map_with_path(learns, params)


def frame_targets(events: jax.Array, num_frames: int, step_seconds: float, num_classes: int) -> jax.Array:
    """Strong labels ``(B, E, 3)`` (onset, offset, label; label -1 = unused) -> ``(B, T, C)`` 0/1
    targets on the model's own frame grid: step ``k`` covers ``[k, k + 1) * step_seconds`` (the
    mapping events are read back with) and is on for a class when one of its events overlaps it."""
    start = jnp.arange(num_frames) * step_seconds
    onset, offset, label = events[..., 0], events[..., 1], events[..., 2].astype(jnp.int32)
    overlap = (onset[:, None, :] < start[None, :, None] + step_seconds) & (offset[:, None, :] > start[None, :, None])
    overlap &= (label >= 0)[:, None, :]  # (B, T, E)
    one_hot = jax.nn.one_hot(label, num_classes, dtype=jnp.float32)  # (B, E, C); -1 -> zeros
    return jnp.minimum(jnp.einsum("bte,bec->btc", overlap.astype(jnp.float32), one_hot), 1.0)


def frame_loss(framewise: jax.Array, batch: Mapping[str, jax.Array], step_seconds: float) -> jax.Array:
    """BCE of the frame map against the strong labels, averaged over the batch's strong clips (0 if none)."""
    pred = jnp.clip(framewise.astype(jnp.float32), 1e-7, 1.0 - 1e-7)
    target = frame_targets(batch["events"], pred.shape[1], step_seconds, pred.shape[2])
    per_clip = -jnp.mean(target * jnp.log(pred) + (1.0 - target) * jnp.log1p(-pred), axis=(1, 2))
    strong = batch["strong"].astype(jnp.float32)
    return jnp.sum(per_clip * strong) / jnp.maximum(jnp.sum(strong), 1.0)


def clip_loss(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], loss_type: str) -> jax.Array:
    """Official losses: ``clip_bce`` = BCE on probabilities with logs clamped at -100 (torch
    ``F.binary_cross_entropy``); ``clip_ce`` = softmax cross-entropy on the clip logits."""
    pred = outputs["clipwise_output"].astype(jnp.float32)
    target = batch["target"].astype(jnp.float32)
    if loss_type == "clip_bce":
        # Logs clamped at -100 as torch does; the inner where keeps the gradient finite (not 0 * inf)
        # when a saturated sigmoid gives exactly 0 or 1.
        log_p = jnp.maximum(jnp.where(pred > 0, jnp.log(jnp.where(pred > 0, pred, 1.0)), -100.0), -100.0)
        log_1mp = jnp.maximum(jnp.where(pred < 1, jnp.log1p(-jnp.where(pred < 1, pred, 0.0)), -100.0), -100.0)
        return -jnp.mean(target * log_p + (1.0 - target) * log_1mp)
    if loss_type == "clip_ce":
        labels = batch["label"] if "label" in batch else jnp.argmax(target, axis=-1)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pred, labels))
    raise ValueError(f"unknown loss_type {loss_type!r}")


def sample_mixup_lambda(key: jax.Array, batch: int, alpha: float = 0.5) -> jax.Array:
    """Per-sample ``Beta(alpha, alpha)`` mixing weights ``(batch,)``."""
    return jax.random.beta(key, alpha, alpha, (batch,))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule, *, loss_type: str,
                    mixup_alpha: float | None, mixup_prob: float = 1.0, data_rate: int | None = None,
                    model_rate: int | None = None, strong_weight: float = 0.0,
                    step_seconds: float | None = None, trainable_head: tuple[str, ...] | None = None) -> Callable:
    """``(state, batch, key) -> (state, metrics)``; pure, for ``jax.jit``.

    ``batch["waveform"]`` is int16 PCM ``(batch, samples)`` at ``data_rate`` (resampled on device to
    ``model_rate`` when they differ); the per-step key is ``fold_in(key, step)`` so a resumed run
    draws the same randomness. With ``mixup_alpha`` each clip is mixed with weight
    ``Beta(alpha, alpha)`` with probability ``mixup_prob`` (else weight 1). With ``strong_weight``
    > 0 the loss adds that weight times :func:`frame_loss` on the clips with strong labels
    (``batch["events"]``, ``batch["strong"]``), the frames placed every ``step_seconds``. With
    ``trainable_head`` only those top-level parameters get gradients: the frozen backbone runs forward
    only (no backward pass through it).
    """

    def train_step(state: TrainState, batch, key):
        step_key = jax.random.fold_in(key, state.step)
        mix_key, fwd_key = jax.random.split(step_key)
        waveform = evaluator_lib.waveform_for_model(batch["waveform"], data_rate or 1, model_rate or data_rate or 1)
        lam = None
        if mixup_alpha:
            lam_key, pick_key = jax.random.split(mix_key)
            lam = sample_mixup_lambda(lam_key, waveform.shape[0], mixup_alpha)
            if mixup_prob < 1.0:  # AST recipe: only some clips are mixed
                lam = jnp.where(jax.random.uniform(pick_key, lam.shape) < mixup_prob, lam, 1.0)

        def loss_fn(params, rest):
            if trainable_head is not None:
                params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                                      trainable_mask(params, trainable_head))
            model = merged_model(graphdef, params, rest)
            out = model(waveform, train=True, key=fwd_key, mixup_lambda=lam)
            loss = clip_loss(out, batch, loss_type)
            if strong_weight:
                loss = loss + strong_weight * frame_loss(out["framewise_output"], batch, step_seconds)
            return loss, nnx.split(model, nnx.Param, ...)[2]

        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(state.step + 1, params, new_rest, opt_state)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads),
                           "learning_rate": schedule(state.step)}

    return train_step


def compile_on_first_call(jitted: Callable) -> Callable:
    """``jitted``, compiled ahead of its first execution so the compiler's freed scratch memory
    goes back to the OS before the step's own buffers are allocated (a lower process peak); later
    calls with other shapes fall back to ``jitted`` (which compiles for them as usual)."""
    compiled: dict[Any, Callable] = {}

    def call(*args):
        signature = jax.tree.map(lambda a: (getattr(a, "shape", None), str(getattr(a, "dtype", ""))), args)
        key = jax.tree_util.tree_flatten(signature)
        key = (tuple(key[0]), key[1])
        if not compiled:
            compiled[key] = jitted.lower(*args).compile()
            host_memory.release_free_memory()
        return compiled[key](*args) if key in compiled else jitted(*args)

    return call


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


def _start(config: ml_collections.ConfigDict, workdir: str) -> tuple[ml_collections.ConfigDict, str]:
    workdir = paths.makedirs(workdir)
    config = experiment.resolve_paths(config, workdir)
    experiment.maybe_prepare_synthetic(config)
    return config, workdir


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, return_state: bool = False):
    """Train (resuming from ``workdir`` if it holds checkpoints), evaluate, write results.

    Returns the results dict (also written to ``WORKDIR/eval_results.json``), and with
    ``return_state`` the final :class:`TrainState` too (notebooks, tests).
    """
    import grain
    import orbax.checkpoint as ocp

    config, workdir = _start(config, workdir)
    is_main = jax.process_index() == 0
    if is_main:
        paths.write_text(paths.join(workdir, "config.json"), config.to_json_best_effort(indent=2))

    # ---------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    if config.batch_size % mesh.devices.size or config.eval_batch_size % mesh.devices.size:
        raise ValueError(f"batch_size={config.batch_size} and eval_batch_size={config.eval_batch_size} "
                         f"must be multiples of the {mesh.devices.size} devices")
    logger.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), mesh.devices.size,
                jax.process_count())

    # ---------------------------------------------------------------- data
    data_kwargs = experiment.data_kwargs(config, train=True)
    train_folds = experiment.folds(config, "train")
    num_train = input_pipeline.count_records(**data_kwargs, split=config.train_split, folds=train_folds)
    steps_per_epoch = int(config.steps_per_epoch or max(1, num_train // config.batch_size))
    total_steps = int(config.total_steps or config.num_epochs * steps_per_epoch)
    logger.info("%d training examples: %d steps per epoch, %d steps (%.1f epochs)", num_train,
                steps_per_epoch, total_steps, total_steps / steps_per_epoch)
    strong = float(config.strong_label_weight)
    train_ds = input_pipeline.make_train_dataset(
        **data_kwargs, split=config.train_split, global_batch_size=config.batch_size,
        seed=int(config.seed) % 2**32, folds=train_folds, balanced=config.balanced_sampling,
        random_crop=config.random_crop, num_threads=config.num_threads,
        max_events=config.train_max_events if strong else 0)
    train_iter = iter(train_ds)
    _, spec = experiment.open_split(config, config.eval_split)
    class_names = experiment.class_names(config)
    metric = best_metric(config, spec.multi_label)

    # ---------------------------------------------------------------- model, born sharded
    model_cfg = model_config(config, spec.num_classes, spec.multi_label)
    module = models.module_of(model_cfg)
    step_seconds = None
    if strong:
        if config.mixup:
            raise ValueError("strong-label training (config.strong_label_weight > 0) cannot be combined with mixup: "
                             "the mixed audio has no frame labels")
        clip_samples = int(round((config.clip_seconds or spec.clip_seconds) * model_cfg.sample_rate))
        step_seconds = module.frame_seconds(model_cfg, clip_samples)
        if step_seconds is None:
            raise ValueError(f"config.strong_label_weight={strong}: the {models.name_of(model_cfg)} model has no "
                             "frame-level output to train on strong labels (use a model with one, e.g. HTS-AT)")
    if model_cfg.sample_rate != spec.sample_rate:
        logger.info("data stored at %d Hz, the model takes %d Hz: resampled on device",
                    spec.sample_rate, model_cfg.sample_rate)
    tx, schedule = optim.make_optimizer(
        config.optim, steps_per_epoch=steps_per_epoch,
        num_epochs=max(int(config.num_epochs), math.ceil(total_steps / steps_per_epoch)))
    frozen = tuple(module.frozen(model_cfg)) if hasattr(module, "frozen") else ()
    head = tuple(getattr(module, "HEAD", ()))
    tx = trainable_only(tx, config.trainable, head, frozen)
    init_weights, init_summary = initial_weights(config, model_cfg)
    if init_summary:
        logger.info(init_summary)
    graphdef, state, state_sh = create_train_state(model_cfg, tx, mesh, seed=int(config.seed),
                                                   dtype=compute_dtype(config), init_weights=init_weights)
    del init_weights
    sizes = jax.tree.map(lambda x: int(np.prod(x.shape)), state.params)
    learning = trainable_mask(state.params, head if config.trainable == "head" else None, frozen)
    num_params = sum(jax.tree.leaves(sizes))
    num_learning = sum(s for s, t in zip(jax.tree.leaves(sizes), jax.tree.leaves(learning)) if t)
    logger.info("%s %s: %.2f M parameters, %.2f M trained, %d classes", models.name_of(model_cfg), config.variant,
                num_params / 1e6, num_learning / 1e6, model_cfg.num_classes)

    # ---------------------------------------------------------------- the jitted step and the evaluator
    repl = sharding.replicated(mesh)
    train_step = compile_on_first_call(jax.jit(
        make_train_step(graphdef, tx, schedule, loss_type=model_cfg.loss_type,
                        mixup_alpha=config.mixup_alpha if config.mixup else None,
                        mixup_prob=float(config.mixup_prob), data_rate=spec.sample_rate,
                        model_rate=model_cfg.sample_rate, strong_weight=strong, step_seconds=step_seconds,
                        trainable_head=head if config.trainable == "head" else None),
        in_shardings=(state_sh, sharding.batch_sharding(mesh), repl), out_shardings=(state_sh, repl),
        donate_argnums=(0,)))
    evaluator = evaluator_lib.Evaluator(config, model_cfg, graphdef, mesh, (state_sh.params, state_sh.rest),
                                        spec, class_names)
    base_key = jax.random.key(int(config.seed))

    # ---------------------------------------------------------------- checkpoints / resume
    ckpt_lib.use_single_writer_when_one_process()
    ckpt_mngr = ocp.CheckpointManager(
        paths.join(workdir, CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                             enable_async_checkpointing=config.async_checkpointing))
    best_mngr = ocp.CheckpointManager(
        paths.join(workdir, BEST_DIR),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_best, create=True, best_fn=lambda m: m[metric],
            best_mode="max", keep_checkpoints_without_metrics=False, enable_async_checkpointing=False))
    start_step = 0
    if ckpt_mngr.latest_step() is not None:
        last = ckpt_mngr.latest_step()
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                state.as_dict(), state_sh.as_dict())
        restored = ckpt_mngr.restore(last, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=grain.checkpoint.CheckpointRestore(train_iter)))
        state = TrainState(**restored["state"])
        start_step = int(state.step)
        logger.info("resumed from %s at step %d", paths.join(workdir, CHECKPOINT_DIR), start_step)
    saved_steps = set(ckpt_mngr.all_steps())

    def save(step: int, force: bool = False) -> None:
        if step in saved_steps:  # e.g. a signal right after a periodic save
            return
        ckpt_mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state.as_dict()), data=grain.checkpoint.CheckpointSave(train_iter)),
            force=force)
        saved_steps.add(step)

    writer = MetricWriter(workdir, tensorboard=config.tensorboard)
    stop = StopSignal()
    evaluated_steps: set[int] = set()
    best_so_far, evals_since_best = -np.inf, 0

    def run_eval(step: int) -> dict[str, float]:
        nonlocal best_so_far, evals_since_best
        result = evaluator.evaluate(state.params, state.rest)
        writer.write(step, {f"eval/{k}": v for k, v in result.items()})
        if metric in result:
            value = float(result[metric])
            value = value if np.isfinite(value) else -np.inf
            if step not in best_mngr.all_steps():
                best_mngr.save(step, args=ocp.args.StandardSave({"params": state.params, "rest": state.rest}),
                               metrics={metric: value})
            best_so_far, evals_since_best = (value, 0) if value > best_so_far else (best_so_far, evals_since_best + 1)
        return result

    # ---------------------------------------------------------------- loop
    progress = None
    if is_main and config.progress_bar:
        from tqdm import tqdm
        progress = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    log_every = max(1, int(config.log_every_steps))
    eval_every = int(config.eval_every_steps or max(1, steps_per_epoch // max(1, int(config.evals_per_epoch))))
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
                logger.info("step %d eval: %s", step, evaluator_lib.format_metrics(result))
                if config.early_stopping_patience and evals_since_best >= config.early_stopping_patience:
                    logger.info("early stop at step %d: no better %s in %d evaluations", step, metric,
                                evals_since_best)
                    break
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

    results: dict[str, Any] = {"step": step, "stopped_early": stopped, "best_metric": metric}
    if not stopped:
        results.update(final_test(config, workdir, graphdef, state, state_sh, best_mngr, evaluator, model_cfg,
                                  class_names))
        if is_main:
            paths.write_json(paths.join(workdir, EVAL_RESULTS_FILE), results)
        logger.info("test (%s weights, step %d): %s", results["weights"], results["weights_step"],
                    evaluator_lib.format_metrics(results["test"]))
        logger.info("results in %s; model exported to %s%s", paths.join(workdir, EVAL_RESULTS_FILE),
                    results["model_dir"], f"; event plots: {', '.join(results['plots'])}" if results["plots"] else "")
    ckpt_mngr.close()
    best_mngr.close()
    writer.close()
    return (results, state) if return_state else results


def final_test(config, workdir: str, graphdef, state: TrainState, state_sh: TrainState, best_mngr,
               evaluator: evaluator_lib.Evaluator, model_cfg, class_names) -> dict[str, Any]:
    """Evaluate on ``config.test_split`` with the weights ``config.test_weights`` picks
    ("best" by ``config.best_metric``, or "last"), and export them as WORKDIR/model."""
    import orbax.checkpoint as ocp

    chosen_step = int(state.step)
    if config.test_weights == "best" and best_mngr.best_step() is not None:  # by the run's best metric
        chosen_step = best_mngr.best_step()
        abstract = {k: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                    getattr(state, k), getattr(state_sh, k)) for k in ("params", "rest")}
        weights = best_mngr.restore(chosen_step, args=ocp.args.StandardRestore(abstract))
        state = dataclasses.replace(state, params=weights["params"], rest=weights["rest"])
    result = evaluator.test(state.params, state.rest, workdir=workdir)
    model_dir = paths.join(workdir, MODEL_DIR)
    if jax.process_index() == 0:
        paths.rmtree(model_dir)  # an earlier (pre-resume) export
    multihost_utils.sync_global_devices("old model export removed")
    extra = {"trained_steps": chosen_step, "dataset": config.dataset, **evaluator.export_extra()}
    ckpt_lib.save_weights(model_dir, model_cfg, model_weights(graphdef, state), class_names=class_names, extra=extra)
    return {**result, "weights": config.test_weights, "weights_step": chosen_step, "model_dir": model_dir}


def read_model(path: str) -> tuple[Any, dict, list[str] | None]:
    """``(config, weights, class names)`` of a model directory or any released file a model reads."""
    path = paths.local_or_remote(path)
    if ckpt_lib.is_model_dir(path):
        cfg, weights, meta = ckpt_lib.load_weights(path)
        return cfg, jax.tree.map(np.asarray, ckpt_lib.normalise_keys(weights)), meta.get("class_names")
    module = models.find_loader(path)
    if module is None:
        raise FileNotFoundError(f"{path!r}: no model directory (with config.json), and no registered model "
                                f"({', '.join(models.names())}) reads this file")
    return module.load(path)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """``mode="evaluate"``: score ``config.init_from`` on ``config.test_split``, no training."""
    config, workdir = _start(config, workdir)
    if not config.init_from:
        raise ValueError("mode='evaluate' needs --config.init_from=MODEL_DIR_OR_CHECKPOINT")
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    _, spec = experiment.open_split(config, config.test_split)
    model_cfg, weights, _ = read_model(config.init_from)
    graphdef, state, state_sh = create_train_state(model_cfg, optax.identity(), mesh, seed=0,
                                                   dtype=compute_dtype(config), init_weights=weights)
    evaluator = evaluator_lib.Evaluator(config, model_cfg, graphdef, mesh, (state_sh.params, state_sh.rest),
                                        spec, experiment.class_names(config))
    result = evaluator.test(state.params, state.rest, workdir=workdir, tune=False)
    results = {"checkpoint": config.init_from, **result}
    if jax.process_index() == 0:
        paths.write_json(paths.join(workdir, EVAL_RESULTS_FILE), results)
    logger.info("test: %s", evaluator_lib.format_metrics(results["test"]))
    return results


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
        per_fold[fold] = train_and_evaluate(fold_cfg, paths.join(workdir, f"fold_{fold}"))
    metric = config.best_metric
    values = [r["test"][metric] for r in per_fold.values() if "test" in r]
    summary = {"folds": {str(f): r.get("test", {}) for f, r in per_fold.items()},
               f"{metric}_mean": float(np.mean(values)) if values else None,
               f"{metric}_std": float(np.std(values)) if values else None}
    if jax.process_index() == 0:
        paths.write_json(paths.join(workdir, EVAL_RESULTS_FILE), summary)
    return summary
