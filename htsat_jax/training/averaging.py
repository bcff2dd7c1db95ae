"""Weight averaging and prediction ensembles (HTSAT_SPEC §7 "Weight averaging" and "Ensemble").

* Weight averaging (official ``main.py weight_average``): the arithmetic mean of every tensor of
  several checkpoints of one architecture, BatchNorm running statistics included.
* Ensemble (official ``main.py esm_test``): the mean of the clipwise probabilities (and of the
  frame-wise maps) of several models over the same clips.

Sources (:func:`list_members`, :func:`weights_from_source`) are a model directory of this project
(``config.json`` + ``weights/``), a released checkpoint file of any registered model, or a training work directory,
whose ``best/<step>/`` checkpoints (the trainer keeps the best ``keep_best`` evaluations by
``best_metric``) each count as one member; ``top=K`` keeps the K best of them.

The command-line tools are ``tools/average_checkpoints.py`` and ``tools/evaluate_ensemble.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from flax import traverse_util

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax.utils import paths

logger = logging.getLogger("htsat_jax")

BEST_DIR = "best"  # == train.BEST_DIR (not imported: train pulls in the data pipeline)
MODEL_DIR = "model"  # == train.MODEL_DIR
EXPERIMENT_CONFIG = "config.json"

# (name, model config, weights, class_names) of one averaging / ensemble member.
Source = tuple[str, Any, dict, "list[str] | None"]


class SourceError(ValueError):
    """An input that is not a model directory, a training work directory or a checkpoint file,
    or inputs that cannot be combined (different architectures, misaligned predictions)."""


# ============================================================================ sources


@dataclasses.dataclass
class Member:
    """One checkpoint to average or ensemble; :meth:`load` reads it (lazily, one at a time)."""

    name: str
    kind: str  # "model_dir", "released_file" or "best_step"
    metrics: dict[str, float] | None = None
    _loader: Callable[[], tuple[Any, dict, "list[str] | None"]] | None = dataclasses.field(
        default=None, repr=False)

    def load(self) -> Source:
        config, weights, class_names = self._loader()
        return self.name, config, weights, class_names


def is_workdir(path: str) -> bool:
    """A training work directory (holds ``best/``) or its ``best/`` folder itself."""
    return paths.isdir(paths.join(path, BEST_DIR)) or _is_manager_dir(path)


def _is_manager_dir(path: str) -> bool:
    if not paths.isdir(path) or paths.isfile(paths.join(path, ckpt_lib.CONFIG_FILE)):
        return False
    return any(d.name.isdigit() and paths.isfile(paths.join(path, d.name, "_CHECKPOINT_METADATA"))
               for d in paths.path(path).iterdir())


def list_members(path: str, top: int | None = None) -> list[Member]:
    """The checkpoints ``path`` stands for (nothing is loaded yet).

    Args:
      path: a model directory, an official ``.ckpt`` file, or a training work directory (or its
        ``best/`` folder).
      top: for a work directory, keep the ``top`` best steps by the metric the trainer stored with
        them (its ``best_metric``, higher is better); None keeps every saved step. Ignored for
        single checkpoints.
    """
    path = paths.local_or_remote(path)
    if top is not None and top < 1:
        raise SourceError(f"top must be >= 1, got {top}")
    if is_workdir(path):
        return _best_members(path, top)
    if ckpt_lib.is_model_dir(path):
        return [Member(path, "model_dir", _loader=lambda: _load_model_dir(path))]
    if paths.exists(path):
        return [Member(path, "released_file", _loader=lambda: _load_released(path))]
    raise SourceError(f"{path}: not a model directory (config.json + weights/), a training work "
                      f"directory (with {BEST_DIR}/) or a checkpoint file")


def weights_from_source(path: str, top: int | None = None) -> list[Source]:
    """Every member of ``path`` loaded: ``[(name, config, weights, class_names), ...]``.

    ``weights`` is a nested dict of numpy arrays == ``nnx.to_pure_dict(nnx.state(model))``
    (integer list indices), as :func:`htsat_jax.checkpoint.build_model` and ``save_weights`` take it.
    """
    return [m.load() for m in list_members(path, top)]


def _numpy_tree(weights: Mapping) -> dict:
    import jax
    return jax.tree.map(np.asarray, ckpt_lib.normalise_keys(dict(weights)))


def _load_model_dir(path: str):
    config, weights, meta = ckpt_lib.load_weights(path)
    return config, _numpy_tree(weights), meta.get("class_names")


def _load_released(path: str):
    from htsat_jax import models

    module = models.find_loader(path)
    if module is None:
        raise SourceError(f"{path}: no registered model ({', '.join(models.names())}) reads this file")
    config, weights, class_names = module.load(path)
    return config, _numpy_tree(weights), class_names


def _best_members(path: str, top: int | None) -> list[Member]:
    import orbax.checkpoint as ocp

    best_dir = paths.join(path, BEST_DIR) if paths.isdir(paths.join(path, BEST_DIR)) else path
    workdir = os.fspath(paths.path(best_dir).parent)
    experiment = _read_json(paths.join(workdir, EXPERIMENT_CONFIG))
    with ocp.CheckpointManager(best_dir, item_handlers=ocp.StandardCheckpointHandler(),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
        steps = sorted(mngr.all_steps())
        if not steps:
            raise SourceError(f"{best_dir}: no saved checkpoints")
        step_metrics = {s: dict(mngr.metrics(s) or {}) for s in steps}
        if top is not None:
            metric = _metric_name(experiment, step_metrics, best_dir)
            missing = [s for s in steps if metric not in step_metrics[s]]
            if missing:
                raise SourceError(f"{best_dir}: steps {missing} have no stored '{metric}'; cannot rank them")
            steps = sorted(steps, key=lambda s: (-float(step_metrics[s][metric]), s))[:top]
        config, class_names = _workdir_model_config(workdir, experiment, mngr, steps[0], best_dir)
    return [Member(paths.join(best_dir, str(s)), "best_step", metrics=step_metrics[s] or None,
                   _loader=_best_loader(best_dir, s, config, class_names)) for s in steps]


def _read_json(path: str) -> dict | None:
    if not paths.isfile(path):
        return None
    return paths.read_json(path)


def _metric_name(experiment: dict | None, step_metrics: Mapping[int, Mapping], where: str) -> str:
    if experiment and experiment.get("best_metric"):
        return str(experiment["best_metric"])
    names = {k for m in step_metrics.values() for k in m}
    if len(names) == 1:
        return names.pop()
    raise SourceError(f"{where}: cannot tell which stored metric ranks the checkpoints "
                      f"(found {sorted(names)}, and no best_metric in {EXPERIMENT_CONFIG})")


def _workdir_model_config(workdir: str, experiment: dict | None, mngr, step: int,
                          where: str) -> tuple[Any, list[str] | None]:
    """The run's model config: from its exported ``model/`` when present, else its experiment config
    (the class count from the config, else from the prepared dataset)."""
    model_meta = _read_json(paths.join(workdir, MODEL_DIR, ckpt_lib.CONFIG_FILE))
    if model_meta and model_meta.get("format") == ckpt_lib.FORMAT:
        return ckpt_lib.config_from_dict(model_meta["model"]), model_meta.get("class_names")
    if experiment is None:
        raise SourceError(f"{where}: neither {MODEL_DIR}/{ckpt_lib.CONFIG_FILE} nor {EXPERIMENT_CONFIG} "
                          f"found in {workdir}; cannot tell the model's architecture")
    import ml_collections

    from htsat_jax.data import experiment as data_experiment
    from htsat_jax.training import train

    exp = data_experiment.resolve_paths(ml_collections.ConfigDict(experiment), workdir)
    names = data_experiment.class_names(exp)
    num_classes = exp.model.get("num_classes") or (len(names) if names else None)
    if num_classes is None:
        raise SourceError(f"{where}: the run's config leaves num_classes to the dataset, which is not readable "
                          f"at {exp.data_dir}")
    config = train.model_config(exp, num_classes=int(num_classes))
    if names is not None and len(names) != config.num_classes:
        names = None
    return config, names


def _best_loader(best_dir: str, step: int, config: Any, class_names):
    def load():
        import jax
        import orbax.checkpoint as ocp
        from flax import nnx

        # Same tree as the trainer's best_mngr.save({"params", "rest"}); numpy leaves restore on
        # the host whatever mesh the run was trained on.
        graphdef, params, rest = nnx.split(ckpt_lib.abstract_model(config), nnx.Param, ...)
        target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), {"params": params, "rest": rest})
        try:
            with ocp.CheckpointManager(best_dir, options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
                restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # noqa: BLE001 - name the step in orbax's varied errors
            raise SourceError(f"could not restore {best_dir}/{step}: {type(e).__name__}: {e}") from e
        model = nnx.merge(graphdef, restored["params"], restored["rest"])
        return config, _numpy_tree(nnx.to_pure_dict(nnx.state(model))), class_names

    return load


# ============================================================================ configs


def config_differences(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """``[(field, a's value, b's value), ...]`` with dotted names for nested fields."""
    fa, fb = _flat_fields(ckpt_lib.config_to_dict(a)), _flat_fields(ckpt_lib.config_to_dict(b))
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _flat_fields(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat_fields(v, name + "."))
        else:
            out[name] = tuple(v) if isinstance(v, list) else v
    return out


def check_same_config(reference: tuple[str, Any], other: tuple[str, Any]) -> None:
    """Raise :class:`SourceError` naming every differing model config field and both inputs."""
    diffs = config_differences(reference[1], other[1])
    if diffs:
        listed = "; ".join(f"{f}: {a!r} vs {b!r}" for f, a, b in diffs)
        raise SourceError(f"model configs differ between {reference[0]} and {other[0]}: {listed}")


# ============================================================================ weight averaging


class WeightAverager:
    """Running float64 sum of pure weight dicts (one member in memory at a time)."""

    def __init__(self):
        self._sum: dict[tuple, np.ndarray] | None = None
        self._dtypes: dict[tuple, np.dtype] = {}
        self._first: dict[tuple, np.ndarray] = {}
        self._first_name = ""
        self.count = 0

    def add(self, weights: Mapping, name: str | None = None) -> None:
        name = name or f"input {self.count + 1}"
        flat = traverse_util.flatten_dict(ckpt_lib.normalise_keys(dict(weights)))
        if self._sum is None:
            self._sum = {k: np.asarray(v, np.float64).copy() for k, v in flat.items()}
            self._dtypes = {k: np.asarray(v).dtype for k, v in flat.items()}
            self._first = {k: np.asarray(v) for k, v in flat.items()
                           if not np.issubdtype(np.asarray(v).dtype, np.inexact)}
            self._first_name = name
        else:
            missing = [_key(k) for k in self._sum if k not in flat]
            extra = [_key(k) for k in flat if k not in self._sum]
            if missing or extra:
                raise SourceError(f"{name}: tensors differ from {self._first_name}: missing {missing[:8]}, "
                                  f"unexpected {extra[:8]}")
            for k, v in flat.items():
                v = np.asarray(v)
                if v.shape != self._sum[k].shape:
                    raise SourceError(f"{name}: {_key(k)} has shape {v.shape}, {self._first_name} has "
                                      f"{self._sum[k].shape}")
                if k in self._first:  # integer state: must agree, nothing to average
                    if not np.array_equal(v, self._first[k]):
                        raise SourceError(f"{name}: integer tensor {_key(k)} differs from {self._first_name}")
                    continue
                self._sum[k] += v.astype(np.float64)
        self.count += 1

    def result(self, dtype: Any = None) -> dict:
        """The mean as a nested dict, in each tensor's original dtype (or ``dtype``)."""
        if not self.count:
            raise SourceError("nothing to average")
        out = {}
        for k, total in self._sum.items():
            if k in self._first:
                out[k] = self._first[k].copy()
            else:
                out[k] = (total / self.count).astype(dtype or self._dtypes[k])
        return traverse_util.unflatten_dict(out)


def average_weights(weights: Iterable[Mapping], *, names: Sequence[str] | None = None,
                    dtype: Any = None) -> dict:
    """Arithmetic mean of every tensor (BatchNorm statistics included) of same-shaped weight trees.

    Sums in float64; the result has each tensor's original dtype (float32) unless ``dtype`` is given.
    Raises :class:`SourceError` when the trees differ (naming the tensor and the input).
    """
    avg = WeightAverager()
    for i, w in enumerate(weights):
        avg.add(w, names[i] if names is not None else None)
    return avg.result(dtype)


def _key(k: tuple) -> str:
    return "/".join(map(str, k))


# ============================================================================ ensembles

AVERAGED_KEYS = ("clipwise", "frames")  # model outputs; every other key is ground truth


def ensemble_predictions(preds: Sequence[Mapping[str, np.ndarray]],
                         names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Mean of ``clipwise`` (and ``frames``) over models; ground truth (``target``, ``label``,
    ``events``) passed through.

    Each element is what :func:`htsat_jax.evaluation.evaluator.collect_predictions` returns for one model over
    the same clips. The mean is computed in float64 and returned in the inputs' dtype.
    Raises :class:`SourceError` when the rows do not align (different ground truth or shapes).
    """
    if not preds:
        raise SourceError("no predictions to ensemble")
    names = list(names) if names is not None else [f"model {i + 1}" for i in range(len(preds))]
    first = preds[0]
    out = {}
    for i, p in enumerate(preds[1:], start=1):
        if set(p) != set(first):
            raise SourceError(f"{names[i]} returned {sorted(p)}, {names[0]} returned {sorted(first)}")
    for key, ref in first.items():
        ref = np.asarray(ref)
        for i, p in enumerate(preds[1:], start=1):
            got = np.asarray(p[key])
            if got.shape != ref.shape:
                raise SourceError(f"predictions do not align: {names[i]} '{key}' has shape {got.shape}, "
                                  f"{names[0]} has {ref.shape}")
            if key not in AVERAGED_KEYS and not np.array_equal(got, ref):
                raise SourceError(f"predictions do not align: {names[i]} and {names[0]} differ in "
                                  f"'{key}' (different clips or clip order)")
        if key in AVERAGED_KEYS:
            total = np.zeros(ref.shape, np.float64)
            for p in preds:
                total += np.asarray(p[key], np.float64)
            out[key] = (total / len(preds)).astype(ref.dtype)
        else:
            out[key] = ref
    if "target" not in out:
        raise SourceError("predictions carry no 'target' rows to align on")
    return out


def evaluate_ensemble(config, workdir: str, sources: Sequence[str], *, top: int | None = None) -> dict[str, Any]:
    """Score every member of ``sources`` and their ensemble on ``config.test_split``.

    Each model predicts like the trainer's final test (``config.test_time_shifts`` passes,
    ``config.event_class_groups``, on-device resampling to its own rate); with event scoring and
    ``config.event_threshold_grid``, each model and the ensemble get their own frame threshold tuned
    on ``config.eval_split``. Writes ``WORKDIR/eval_results.json`` and returns the same dict.
    """
    import jax
    import optax
    from tqdm import tqdm

    from htsat_jax.data import experiment
    from htsat_jax.evaluation import evaluator as evaluator_lib
    from htsat_jax.training import sharding
    from htsat_jax.training import train

    workdir = paths.makedirs(workdir)
    config = experiment.resolve_paths(config, workdir)
    experiment.maybe_prepare_synthetic(config)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    _, spec = experiment.open_split(config, config.test_split)
    members = [m for s in sources for m in list_members(s, top)]
    if not members:
        raise SourceError("no models given")
    class_names = experiment.class_names(config)
    shifts = tuple(int(s) for s in config.test_time_shifts)
    grid = tuple(config.event_threshold_grid or ())
    evaluators: dict[Any, evaluator_lib.Evaluator] = {}  # one program per architecture, not per model

    def scored(test, valid, settings):
        extra = {}
        if valid is not None:
            thr, f1 = evaluator_lib.tune_event_threshold(valid, settings, grid)
            settings = dataclasses.replace(settings, event_thresholds=np.float64(thr))
            extra = {"event_threshold": thr, "event_threshold_tuned_on": config.eval_split,
                     f"{config.eval_split}_event_f1_at_threshold": f1}
        return {"test": evaluator_lib.score(test, settings), **extra}

    per_model, tests, valids, settings, reference = [], [], [], None, None
    for i, member in enumerate(tqdm(members, desc="models", unit="model",
                                    disable=jax.process_index() != 0)):
        name, model_cfg, weights, _ = member.load()
        if reference is not None and model_cfg.num_classes != reference[1].num_classes:
            raise SourceError(f"{name} has {model_cfg.num_classes} classes, {reference[0]} has "
                              f"{reference[1].num_classes}: an ensemble needs the same outputs")
        reference = reference or (name, model_cfg)
        graphdef, state, state_sh = train.create_train_state(
            model_cfg, optax.identity(), mesh, seed=0, dtype=train.compute_dtype(config), init_weights=weights)
        del weights
        if model_cfg not in evaluators:
            evaluators[model_cfg] = evaluator_lib.Evaluator(config, model_cfg, graphdef, mesh,
                                                            (state_sh.params, state_sh.rest), spec, class_names)
        ev = evaluators[model_cfg]
        settings = ev.settings if settings is None else settings
        test = ev.predictions(state.params, state.rest, config.test_split, shifts=shifts)
        valid = (ev.predictions(state.params, state.rest, config.eval_split)
                 if ev.settings.events and grid else None)
        entry = {"source": name, **({"checkpoint_metrics": member.metrics} if member.metrics else {}),
                 **scored(test, valid, ev.settings)}
        per_model.append(entry)
        logger.info("model %d/%d %s: %s", i + 1, len(members), name, evaluator_lib.format_metrics(entry["test"]))
        tests.append(test)
        if valid is not None:
            valids.append(valid)
        del state
    names = [m.name for m in members]
    ensemble_test = ensemble_predictions(tests, names)
    ensemble_valid = ensemble_predictions(valids, names) if valids else None
    ensemble = {"num_models": len(members), **scored(ensemble_test, ensemble_valid, settings)}
    results = {"test_split": config.test_split, "time_shifts": list(shifts), "models": per_model,
               "ensemble": ensemble}
    if jax.process_index() == 0:
        paths.write_json(paths.join(workdir, train.EVAL_RESULTS_FILE), results)
    logger.info("ensemble of %d: %s", len(members), evaluator_lib.format_metrics(ensemble["test"]))
    return results
