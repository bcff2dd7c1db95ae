"""This project's model checkpoint directory: ``config.json`` + an orbax checkpoint of the weights.

Layout of a model directory (what ``python -m htsat_jax.convert`` writes and every entry point
restores)::

    DIR/config.json   {"format": "htsat_jax.model/1", "model": {"model_name": NAME, **Config fields},
                       "class_names": [...] or null, ...extra}
                      (directories written before model_name was stored: see models.stored_name)
    DIR/weights/      orbax StandardCheckpointer tree == nnx.to_pure_dict(nnx.state(model))
"""

from __future__ import annotations

import csv
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax import models
from htsat_jax.convert.common import normalise_keys
from htsat_jax.utils import paths

FORMAT = "htsat_jax.model/1"
CONFIG_FILE = "config.json"
WEIGHTS_DIR = "weights"


class CheckpointDirError(ValueError):
    """A checkpoint directory that is missing, incomplete or of another format."""


def read_class_names(path: str) -> list[str]:
    """Class names from ``class_labels_indices.csv`` (index,mid,display_name) or one name per line."""
    text = paths.path(path).read_text(encoding="utf-8")
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]][:3] == ["index", "mid", "display_name"]:
        return [r[2].strip() for r in rows[1:]]
    if all(len(r) == 1 for r in rows):
        return [r[0].strip() for r in rows]
    raise CheckpointDirError(f"{path}: expected 'index,mid,display_name' rows or one class name per line")


def config_from_dict(d: Mapping[str, Any]) -> Any:
    """The config.json "model" entry -> its model's ``Config`` (see :func:`htsat_jax.models.stored_name`)."""
    return models.config_from_dict(d)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A model config as stored in config.json: its fields plus ``model_name``."""
    return {"model_name": models.name_of(config), **config.to_dict()}


def abstract_model(config: Any, param_dtype: Any = jnp.float32) -> nnx.Module:
    """The model with shapes only (no parameter memory, no random init)."""
    return models.abstract(config, param_dtype=param_dtype)


def build_model(config: Any, weights: Mapping | None = None, *, seed: int = 0,
                dtype: Any = None, param_dtype: Any = jnp.float32) -> nnx.Module:
    """A model from a config, with ``weights`` (nested dict as returned by the converter) if given.

    Raises:
      CheckpointDirError: when ``weights`` does not have exactly the model's keys and shapes.
    """
    if weights is None:
        return models.build(config, seed=seed, dtype=dtype, param_dtype=param_dtype)
    # Shapes only, then the given values: no random initialisation to throw away (about 10 s for a
    # paper-size AST on 2 CPU cores).
    graphdef, state = nnx.split(models.abstract(config, dtype=dtype, param_dtype=param_dtype))
    expected = nnx.to_pure_dict(state)
    weights = normalise_keys(weights)
    _check_same_tree(expected, weights)
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda ref, w: jnp.asarray(w, dtype=ref.dtype), expected, weights))
    return nnx.merge(graphdef, state)


def _check_same_tree(expected: Mapping, got: Mapping, prefix: str = "") -> None:
    """Same keys and shapes at every level (``got`` already has integer list indices)."""
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        raise CheckpointDirError(f"weights do not match the model at '{prefix or '<root>'}': "
                                 f"missing {missing[:8]}, unexpected {extra[:8]}")
    for k, v in expected.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            if not isinstance(got[k], Mapping):
                raise CheckpointDirError(f"weights: '{path}' should be a group of tensors")
            _check_same_tree(v, got[k], path)
        elif tuple(np.shape(got[k])) != tuple(v.shape):
            raise CheckpointDirError(f"weights: '{path}' has shape {tuple(np.shape(got[k]))}, the model "
                                     f"expects {tuple(v.shape)}")


def use_single_writer_when_one_process() -> None:
    """In a one-process run, orbax writes each replicated array from one device in one piece.

    orbax's default on CPU and TPU is replica-parallel saving: every replicated array is cut into one
    slice per replica so that several hosts can write it together. In one process every replica is
    local and this process writes all the slices anyway, so the cut only costs: each slice is an
    eagerly dispatched ``lax.slice`` with its own compiled program (a 4-step tiny run on 8 CPU devices
    spent 27 s of its 117 s in the first checkpoint save, 4,400 slices). Multi-process runs keep the
    default. The file format is the same either way. Sets orbax's registered ``jax.Array`` handler;
    repeated calls are harmless.
    """
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


def save_weights(directory: str, config: Any, weights: Mapping, *,
                 class_names: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None) -> None:
    """Write a model directory (see module docstring). Refuses to overwrite a non-empty directory.

    ``weights`` may hold numpy arrays or (possibly sharded) global jax arrays; in a multi-process
    run every process must call this (orbax saves collectively), and process 0 writes config.json.
    """
    import orbax.checkpoint as ocp
    from jax.experimental import multihost_utils

    directory = paths.local_or_remote(directory)
    occupied = paths.isdir(directory) and any(True for _ in paths.path(directory).iterdir())
    if jax.process_count() > 1:  # every process must take the same branch
        occupied = bool(multihost_utils.process_allgather(np.array([occupied])).any())
    if occupied:
        raise CheckpointDirError(f"{directory} exists and is not empty; choose a new output directory")
    if class_names is not None and len(class_names) != config.num_classes:
        raise CheckpointDirError(f"{len(class_names)} class names for {config.num_classes} classes")
    paths.makedirs(directory)
    tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x),
                        normalise_keys(dict(weights)))
    use_single_writer_when_one_process()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(paths.join(directory, WEIGHTS_DIR), tree)
        ckptr.wait_until_finished()
    meta = {"format": FORMAT, "model": config_to_dict(config),
            "class_names": list(class_names) if class_names is not None else None}
    meta.update(extra or {})
    if jax.process_index() == 0:
        paths.write_json(paths.join(directory, CONFIG_FILE), meta)


def save_model(directory: str, model: nnx.Module, **kwargs) -> None:
    """Write ``model``'s config and weights (parameters and BatchNorm statistics)."""
    save_weights(directory, model.config, nnx.to_pure_dict(nnx.state(model)), **kwargs)


def is_model_dir(path: str) -> bool:
    """A directory with this project's config.json (a transformers folder's config.json is not one)."""
    cfg = paths.join(path, CONFIG_FILE)
    if not (paths.isdir(path) and paths.isfile(cfg)):
        return False
    try:
        return str(paths.read_json(cfg).get("format", "")).startswith(FORMAT.split("/")[0])
    except (ValueError, AttributeError):
        return False


def load_weights(directory: str) -> tuple[Any, dict, dict]:
    """Read a model directory: ``(config, weights, metadata)``."""
    import orbax.checkpoint as ocp

    directory = paths.local_or_remote(directory)
    cfg_path = paths.join(directory, CONFIG_FILE)
    if not paths.isfile(cfg_path):
        raise CheckpointDirError(f"{directory} is not a model directory: {CONFIG_FILE} not found")
    meta = paths.read_json(cfg_path)
    if meta.get("format") != FORMAT:
        raise CheckpointDirError(f"{cfg_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = config_from_dict(meta["model"])
    target = nnx.to_pure_dict(nnx.state(abstract_model(config)))
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
    weights_path = paths.join(directory, WEIGHTS_DIR)
    if not paths.isdir(weights_path):
        raise CheckpointDirError(f"{directory}: weights directory '{WEIGHTS_DIR}' not found")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            weights = ckptr.restore(weights_path, target)
    except Exception as e:  # noqa: BLE001 - orbax errors are varied; name the directory
        raise CheckpointDirError(f"could not restore weights from {weights_path}: {type(e).__name__}: {e}") from e
    return config, weights, meta


def load_model(directory: str, **kwargs) -> tuple[nnx.Module, dict]:
    """Model and metadata from a model directory."""
    config, weights, meta = load_weights(directory)
    return build_model(config, weights, **kwargs), meta
