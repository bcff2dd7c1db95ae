"""This project's model checkpoint directory: ``config.json`` + an orbax checkpoint of the weights.

Layout of a model directory (what ``python -m htsat_jax.convert`` writes and every entry point
restores)::

    DIR/config.json   {"format": "htsat_jax.model/1", "model": HTSATConfig or ASTConfig as dict,
                       "class_names": [...] or null, ...extra}
                      (an ASTConfig dict has "model_type": "ast"; no model_type means HTS-AT)
    DIR/weights/      orbax StandardCheckpointer tree == nnx.to_pure_dict(nnx.state(model))
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax.models.ast import AST, ASTConfig
from htsat_jax.models.htsat import HTSAT, HTSATConfig

FORMAT = "htsat_jax.model/1"
CONFIG_FILE = "config.json"
WEIGHTS_DIR = "weights"


class CheckpointDirError(ValueError):
    """A checkpoint directory that is missing, incomplete or of another format."""


def read_class_names(path: str) -> list[str]:
    """Class names from ``class_labels_indices.csv`` (index,mid,display_name) or one name per line."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]][:3] == ["index", "mid", "display_name"]:
        return [r[2].strip() for r in rows[1:]]
    if all(len(r) == 1 for r in rows):
        return [r[0].strip() for r in rows]
    raise CheckpointDirError(f"{path}: expected 'index,mid,display_name' rows or one class name per line")


def model_class(config: HTSATConfig | ASTConfig) -> type:
    """HTSAT for an HTSATConfig, AST for an ASTConfig."""
    return AST if isinstance(config, ASTConfig) else HTSAT


def config_from_dict(d: dict) -> HTSATConfig | ASTConfig:
    """The config.json "model" entry -> its config class (``model_type`` "ast" -> ASTConfig)."""
    return ASTConfig.from_dict(d) if d.get("model_type") == "ast" else HTSATConfig.from_dict(d)


def abstract_model(config: HTSATConfig | ASTConfig, param_dtype: Any = jnp.float32) -> HTSAT | AST:
    """The model with shapes only (no parameter memory, no random init)."""
    cls = model_class(config)
    return nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0), param_dtype=param_dtype))


def build_model(config: HTSATConfig, weights: Mapping | None = None, *, seed: int = 0,
                dtype: Any = None, param_dtype: Any = jnp.float32) -> HTSAT:
    """A model from a config, with ``weights`` (nested dict as returned by the converter) if given.

    Raises:
      CheckpointDirError: when ``weights`` does not have exactly the model's keys and shapes.
    """
    cls = model_class(config)
    if weights is None:
        return cls(config, rngs=nnx.Rngs(seed), dtype=dtype, param_dtype=param_dtype)
    # Shapes only, then the given values: no random initialisation to throw away (about 10 s for a
    # paper-size AST on 2 CPU cores).
    graphdef, state = nnx.split(nnx.eval_shape(
        lambda: cls(config, rngs=nnx.Rngs(seed), dtype=dtype, param_dtype=param_dtype)))
    expected = nnx.to_pure_dict(state)
    weights = normalise_keys(weights)
    _check_same_tree(expected, weights)
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda ref, w: jnp.asarray(w, dtype=ref.dtype), expected, weights))
    return nnx.merge(graphdef, state)


def normalise_keys(tree: Any) -> Any:
    """orbax/JSON may turn integer list indices into strings; map them back."""
    if isinstance(tree, Mapping):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): normalise_keys(v) for k, v in tree.items()}
    return tree


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


def save_weights(directory: str, config: HTSATConfig, weights: Mapping, *,
                 class_names: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None) -> None:
    """Write a model directory (see module docstring). Refuses to overwrite a non-empty directory.

    ``weights`` may hold numpy arrays or (possibly sharded) global jax arrays; in a multi-process
    run every process must call this (orbax saves collectively), and process 0 writes config.json.
    """
    import orbax.checkpoint as ocp
    from jax.experimental import multihost_utils

    directory = os.path.abspath(directory)
    occupied = os.path.exists(directory) and bool(os.listdir(directory))
    if jax.process_count() > 1:  # every process must take the same branch
        occupied = bool(multihost_utils.process_allgather(np.array([occupied])).any())
    if occupied:
        raise CheckpointDirError(f"{directory} exists and is not empty; choose a new output directory")
    if class_names is not None and len(class_names) != config.num_classes:
        raise CheckpointDirError(f"{len(class_names)} class names for {config.num_classes} classes")
    os.makedirs(directory, exist_ok=True)
    tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x),
                        normalise_keys(dict(weights)))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(directory, WEIGHTS_DIR), tree)
        ckptr.wait_until_finished()
    meta = {"format": FORMAT, "model": config.to_dict(),
            "class_names": list(class_names) if class_names is not None else None}
    meta.update(extra or {})
    if jax.process_index() == 0:
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)


def save_model(directory: str, model: HTSAT, **kwargs) -> None:
    """Write ``model``'s config and weights (parameters and BatchNorm statistics)."""
    save_weights(directory, model.config, nnx.to_pure_dict(nnx.state(model)), **kwargs)


def is_model_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def load_weights(directory: str) -> tuple[HTSATConfig, dict, dict]:
    """Read a model directory: ``(config, weights, metadata)``."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    cfg_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(cfg_path):
        raise CheckpointDirError(f"{directory} is not a model directory: {CONFIG_FILE} not found")
    with open(cfg_path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise CheckpointDirError(f"{cfg_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = config_from_dict(meta["model"])
    target = nnx.to_pure_dict(nnx.state(abstract_model(config)))
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
    weights_path = os.path.join(directory, WEIGHTS_DIR)
    if not os.path.isdir(weights_path):
        raise CheckpointDirError(f"{directory}: weights directory '{WEIGHTS_DIR}' not found")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            weights = ckptr.restore(weights_path, target)
    except Exception as e:  # noqa: BLE001 - orbax errors are varied; name the directory
        raise CheckpointDirError(f"could not restore weights from {weights_path}: {type(e).__name__}: {e}") from e
    return config, weights, meta


def load_model(directory: str, **kwargs) -> tuple[HTSAT, dict]:
    """Model and metadata from a model directory."""
    config, weights, meta = load_weights(directory)
    return build_model(config, weights, **kwargs), meta
