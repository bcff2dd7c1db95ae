"""Helpers for the experiment configs (each a plain ``get_config(arg)``); no recipe lives here.

Every config file states its whole recipe (optimiser, schedule, augmentation, data policy, model);
these functions only build the pieces with the numbers the config passes in, and the trainer's
plumbing fields (paths, logging, checkpoints, sharding) with their neutral defaults.

``arg`` is a small ``key=value,key=value`` string after the config path, e.g.
``--config configs/htsat/audioset.py:variant=tiny``; any field can then be overridden with
``--config.field=value``.
"""

from __future__ import annotations

import importlib.util
import pathlib

import ml_collections
from ml_collections import config_dict

VARIANTS = ("base", "tiny")
CONFIG_ROOT = pathlib.Path(__file__).resolve().parent


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """``"variant=tiny,foo=1"`` -> ConfigDict over ``defaults`` (unknown keys are an error)."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in out:
            raise ValueError(f"config argument {item!r}: expected key=value with key in {sorted(out)}")
        out[key] = _cast(out[key], value.strip())
    if out.get("variant", "base") not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {out['variant']!r}")
    return ml_collections.ConfigDict(out)


def _cast(default, value: str):
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    return value if default is None else type(default)(value)


def load(relative_path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of another config file under ``configs/`` (thin aliases use this)."""
    path = CONFIG_ROOT / relative_path
    if not path.is_file():
        known = sorted(str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.glob("*/*.py") if p.stem != "__init__")
        raise ValueError(f"no config {relative_path} under {CONFIG_ROOT}; known: {known}")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def model(model_name: str, variant: str, **fields) -> ml_collections.ConfigDict:
    """``config.model``: the model's Config defaults, its named ``variant``'s sizes, then ``fields``.

    ``num_classes`` stays open (None: taken from the prepared dataset) unless given.
    """
    from htsat_jax import models

    module = models.get(model_name)
    if variant not in module.VARIANTS:
        raise ValueError(f"{model_name} has no variant {variant!r}; it has {sorted(module.VARIANTS)}")
    out = module.Config().to_dict()
    out.pop("model_type", None)
    out.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in module.VARIANTS[variant].items()})
    out["num_classes"] = config_dict.placeholder(int)
    out.update(fields)
    return ml_collections.ConfigDict(out)


def adamw_epoch_schedule(*, base_lr: float, warmup_factors: tuple[float, ...], step_epochs: tuple[int, ...],
                         lr_floor: float, weight_decay: float, grad_clip_norm: float, b1: float = 0.9,
                         b2: float = 0.999, eps: float = 1e-8) -> ml_collections.ConfigDict:
    """AdamW with the official HTS-AT epoch-stepped LR factors (``htsat_jax.training.optim``)."""
    return ml_collections.ConfigDict(dict(
        name="adamw", base_lr=base_lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        grad_clip_norm=grad_clip_norm, warmup_factors=tuple(warmup_factors), step_epochs=tuple(step_epochs),
        lr_floor=lr_floor))


def adam_l2_multistep(*, base_lr: float, weight_decay: float, warmup_steps: int, decay_start: int, decay_every: int,
                      decay: float, b1: float, b2: float, warmup_every: int = 50, eps: float = 1e-8,
                      grad_clip_norm: float = 0.0) -> ml_collections.ConfigDict:
    """Adam with L2 weight decay and a MultiStepLR-per-epoch schedule after a stepped warm-up (AST)."""
    return ml_collections.ConfigDict(dict(
        name="adam_l2", base_lr=base_lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        grad_clip_norm=grad_clip_norm, warmup_steps=warmup_steps, warmup_every=warmup_every,
        decay_start=decay_start, decay_every=decay_every, decay=decay))


def experiment(variant: str) -> ml_collections.ConfigDict:
    """The trainer's plumbing with neutral defaults; the config file sets the recipe fields
    (dataset and data policy, model, optimiser, batch size, epochs, augmentation, evaluation),
    which start out empty here so a config that forgets one fails loudly."""
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.mode = "train"  # "train" or "evaluate" (score config.init_from on config.test_split)

    # ---- data (the dataset facts -- rate, classes, names, strong labels -- come from the prepared data)
    c.dataset = config_dict.placeholder(str)
    c.data_dir = "~/tensorflow_datasets"  # local or gs://; "" = WORKDIR/data
    c.builder_config = config_dict.placeholder(str)
    c.train_split = "train"
    c.eval_split = "test"  # evaluated during training (checkpoint selection)
    c.test_split = "test"  # evaluated once at the end -> eval_results.json
    c.train_folds = ()  # fold filters (ESC-50); () = all
    c.eval_folds = ()
    c.cross_validation_folds = ()  # non-empty: one run per held-out fold, mean +- std
    c.clip_seconds = config_dict.placeholder(float)  # data policy; None = the dataset's registered length
    c.length_policy = config_dict.placeholder(str)  # pad_or_truncate / self_concat / repeat_to_length
    c.balanced_sampling = config_dict.placeholder(bool)  # None: the dataset's default
    c.random_crop = False  # train on random clip_seconds crops of longer clips (pad_or_truncate policy)
    c.eval_clip_seconds = config_dict.placeholder(float)  # eval/test clip length; None = clip_seconds
    c.num_threads = 4
    c.class_names = config_dict.placeholder(tuple)  # None: from the prepared dataset
    c.prepare_synthetic_data = False  # build synthetic_events into data_dir when missing

    # ---- model
    c.model_name = config_dict.placeholder(str)  # None: the model config.init_from holds (fine-tuning)
    c.model = ml_collections.ConfigDict()
    c.dtype = "float32"  # compute dtype: "float32" or "bfloat16" (parameters stay float32)
    c.init_from = config_dict.placeholder(str)  # anything the model's init_from accepts

    # ---- optimisation (the recipe)
    c.seed = 970131
    c.batch_size = config_dict.placeholder(int)
    c.eval_batch_size = config_dict.placeholder(int)
    c.num_epochs = config_dict.placeholder(int)
    c.steps_per_epoch = config_dict.placeholder(int)  # None: training examples // batch_size
    c.total_steps = config_dict.placeholder(int)  # None: num_epochs * steps_per_epoch
    c.optim = ml_collections.ConfigDict()
    c.mixup = False
    c.mixup_alpha = 0.0
    c.mixup_prob = 1.0  # share of clips mixed
    c.trainable = "all"  # "all", or "head": only the model's classifier learns (a linear probe)
    c.strong_label_weight = 0.0  # > 0: add this weight x the frame-level loss on clips with strong labels
    c.train_max_events = 32  # strong labels per training clip (strong-label training)
    c.early_stopping_patience = 0  # > 0: stop after this many evaluations without a better best_metric

    # ---- sharding: data parallel over every device; fsdp > 1 also splits parameters
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))

    # ---- logging, evaluation, checkpoints
    c.log_every_steps = 50
    c.evals_per_epoch = 1
    c.eval_every_steps = config_dict.placeholder(int)  # None: steps_per_epoch // evals_per_epoch
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.keep_best = 3
    c.best_metric = "mAP"  # or "auto": accuracy for single-label data, mAP for multi-label
    c.test_weights = "best"  # "best" (by best_metric) or "last"
    c.test_time_shifts = (0,)
    c.eval_metrics = ()  # extra clip metrics: "lwlrap", "pr_auc" (Keras-style micro PR-AUC)
    c.eval_chunk_seconds = config_dict.placeholder(float)  # chunked evaluation: the model sees chunks ...
    c.eval_chunk_hop_seconds = config_dict.placeholder(float)  # ... this far apart; clip = mean of chunks
    c.async_checkpointing = True
    c.tensorboard = True
    c.progress_bar = True

    # ---- sound event detection scoring (strong labels)
    c.event_eval = False
    c.event_class_names = config_dict.placeholder(tuple)
    c.event_class_groups = config_dict.placeholder(tuple)  # per event class: model class indices
    c.event_thresholds = (0.5,)  # one value for all event classes, or one per class
    c.event_clip_gate = config_dict.placeholder(float)  # events only for classes whose clip score > gate
    c.event_threshold_grid = ()  # non-empty: tune one frame threshold on eval_split before the test
    c.event_psds_scenarios = ()  # DCASE PSDS scenarios (1, 2) to report (sed_scores_eval)
    c.eval_max_events = 32
    c.plot_events = 0  # >0: write event-map PNGs for that many test clips
    return c


def shrink_for_cpu(c: ml_collections.ConfigDict) -> None:
    """The ``tiny`` variant's trainer settings: small batches, frequent logs, few checkpoints."""
    c.batch_size = 8
    c.eval_batch_size = 8
    c.log_every_steps = 5
    c.checkpoint_every_steps = 50
    c.keep_best = 2
    c.num_threads = 2
