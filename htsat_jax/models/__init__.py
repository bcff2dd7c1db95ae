"""The model registry: ``config.model_name`` -> the module that is that model.

Everything outside a model's own module (and its converters) asks this registry and the module,
never which model it holds. A model module exposes these names (HTS-AT: ``htsat_jax.models.htsat``,
AST: ``htsat_jax.models.ast``; a complete small example: ``tests/tiny_cnn.py``):

``NAME``
    the registry name (also stored as ``model_name`` in every model directory's ``config.json``).
``Config``
    a frozen dataclass with ``to_dict()`` / ``from_dict(d)``, ``num_classes``, ``sample_rate``
    (the rate of the waveform the model takes) and ``loss_type`` (``clip_bce``: clip outputs are
    sigmoid probabilities; ``clip_ce``: softmax logits).
``VARIANTS``
    ``{"base": {...}, "tiny": {...}}``: field overrides of named sizes (``tiny`` runs on a CPU).
``Model``
    the ``nnx.Module``: ``Model(config, *, rngs, dtype=None, param_dtype=float32)``, called as
    ``model(waveform (batch, samples), *, train=False, key=None, mixup_lambda=None)`` and returning
    ``clipwise_output (batch, classes)``, ``latent_output (batch, features)`` and, for models with
    frame-level output, ``framewise_output (batch, frames, classes)`` (absent otherwise).
``frame_seconds(config, num_samples) -> float | None``
    seconds between consecutive ``framewise_output`` steps for an input of ``num_samples``
    samples; None for models without frame-level output.
``infer(model, waveform) -> outputs``
    the model's own inference forward for one clip (what ``AudioTagger(...)(x, sr)`` runs);
    jit-able, the input length is static.
``input_limits(config) -> (min_samples, max_samples)``
    what :func:`infer` accepts (``max_samples`` None: no limit).
``windows(config, window_s, hop_s) -> inference.windowing.Windows | None``
    how audio of any length is cut, run and stitched (None: clip tags only, no windowed analysis).
``can_load(path) -> bool`` / ``load(path, *, loss_type=None) -> (config, weights, class_names)``
    released files of this model that are not model directories (official checkpoints...).
``init_from(path, config, fresh, *, seed) -> (weights, summary)``
    weights to start training ``config`` from ``path`` (a model directory or any file the model
    knows), given the freshly initialised weights ``fresh`` (what is not taken stays fresh).
``export_forward(model, num_samples) -> callable | None``
    a forward that ONNX export can lower (``waveform -> dict``), None when export is unsupported.

Optional: ``HEAD`` (the classifier's top-level parameter names: re-initialised when fine-tuning to
other classes, the only part trained with ``config.trainable="head"``) and ``EXPORT_SECONDS`` (the
input length ONNX export uses by default; 10 s without it) and ``frozen(config) -> tuple[str, ...]``
(top-level parameter names the config holds fixed: the trainer leaves them untouched, weight decay
included; LEAN's ``freeze_yamnet``).

Register a model that lives outside the package with :func:`register` (a module object or an
import path), or name it by import path: ``config.model_name = "mypackage.mymodel"``.
"""

from __future__ import annotations

import importlib
import types
from typing import Any, Mapping

# Built-in models: registry name -> module path (imported on first use).
_BUILTIN = {
    "htsat": "htsat_jax.models.htsat",
    "ast": "htsat_jax.models.ast",
    "yamnet": "htsat_jax.models.yamnet",
    "lean": "htsat_jax.models.lean",
}
_REGISTERED: dict[str, types.ModuleType | str] = {}
# Model directories written before ``model_name`` existed: no name means HTS-AT, and an AST's
# dict carried ``model_type`` (its registry name).
DEFAULT_MODEL = "htsat"
_CONTRACT = ("NAME", "Config", "VARIANTS", "Model", "frame_seconds", "infer", "input_limits", "windows",
             "can_load", "load", "init_from", "export_forward")


class UnknownModelError(ValueError):
    """A model name that is neither registered nor importable."""


def register(name: str, module: types.ModuleType | str) -> None:
    """Make ``name`` resolve to ``module`` (a module object or its import path)."""
    _REGISTERED[name] = module


def names() -> list[str]:
    """Registered model names."""
    return sorted({*_BUILTIN, *_REGISTERED})


def get(name: str) -> types.ModuleType:
    """The model module registered as ``name`` (or importable as ``name``), contract checked."""
    target = _REGISTERED.get(name, _BUILTIN.get(name))
    if target is None and "." in name:
        target = name
    if target is None:
        raise UnknownModelError(f"unknown model {name!r}; registered: {names()} (register others with "
                                "htsat_jax.models.register(name, module) or give an import path)")
    module = importlib.import_module(target) if isinstance(target, str) else target
    missing = [n for n in _CONTRACT if not hasattr(module, n)]
    if missing:
        raise UnknownModelError(f"model module {module.__name__} lacks {missing} (see htsat_jax.models)")
    return module


def name_of(config: Any) -> str:
    """The registry name of a model config (its module's ``NAME``)."""
    name = getattr(config, "model_name", None)
    if name is None:
        raise UnknownModelError(f"{type(config).__name__} has no model_name")
    return name


def module_of(config: Any) -> types.ModuleType:
    """The module of a model config object."""
    return get(name_of(config))


def stored_name(d: Mapping[str, Any]) -> str:
    """The model name of a stored config dict, including those written before names were stored."""
    return d.get("model_name") or d.get("model_type") or DEFAULT_MODEL


def config_from_dict(d: Mapping[str, Any], name: str | None = None) -> Any:
    """A stored or ml_collections config dict -> its model's ``Config``."""
    name = name or stored_name(d)
    fields = {k: v for k, v in d.items() if k not in ("model_name", "model_type")}
    return get(name).Config.from_dict(fields)


def build(config: Any, *, seed: int = 0, dtype: Any = None, param_dtype: Any = None) -> Any:
    """A freshly initialised model of ``config``."""
    import jax.numpy as jnp
    from flax import nnx

    return module_of(config).Model(config, rngs=nnx.Rngs(seed), dtype=dtype,
                                   param_dtype=param_dtype or jnp.float32)


def abstract(config: Any, *, dtype: Any = None, param_dtype: Any = None) -> Any:
    """The model with shapes only (no parameter memory, no random draw)."""
    from flax import nnx

    return nnx.eval_shape(lambda: build(config, dtype=dtype, param_dtype=param_dtype))


def find_loader(path: str) -> types.ModuleType | None:
    """The first registered model whose ``can_load`` accepts ``path`` (a released file), or None."""
    for name in names():
        module = get(name)
        if module.can_load(path):
            return module
    return None
