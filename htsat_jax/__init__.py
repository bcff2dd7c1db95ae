"""htsat-jax: HTS-AT (hierarchical token-semantic audio transformer) and friends in JAX/Flax.

Main entry points:
  AudioTagger            numpy audio in, clip-wise tags / frame-wise event maps / embeddings out
  models                 the model registry (``htsat_jax.models.get("htsat")``; HTS-AT, AST, ...)
  HTSAT, HTSATConfig     the Flax NNX HTS-AT and its configuration
  AST, ASTConfig         the AST baseline (htsat_jax.models.ast) in the same framework
  load_torch_checkpoint  official PyTorch HTS-AT checkpoints -> (config, weights)

Packages follow the data flow: ``data`` (pipelines, decoding, synthetic scenes) -> ``models``
(each model with its frontend) -> ``training`` / ``evaluation`` -> ``inference`` (tagger,
windowing, events, predict, export); ``convert`` reads released checkpoints.
"""

import importlib

# Resolved on first use, so that ``import htsat_jax.utils.host_memory`` (which entry points run
# before anything else, see there) does not import jax.
_LAZY = {
    "models": ("htsat_jax.models", None),
    "CheckpointError": ("htsat_jax.convert", "CheckpointError"),
    "load_torch_checkpoint": ("htsat_jax.convert", "load_torch_checkpoint"),
    "AudioInputError": ("htsat_jax.inference.tagger", "AudioInputError"),
    "AudioTagger": ("htsat_jax.inference.tagger", "AudioTagger"),
    "AST": ("htsat_jax.models.ast", "AST"),
    "ASTConfig": ("htsat_jax.models.ast", "ASTConfig"),
    "HTSAT": ("htsat_jax.models.htsat", "HTSAT"),
    "HTSATConfig": ("htsat_jax.models.htsat", "HTSATConfig"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'htsat_jax' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


__all__ = ["AST", "ASTConfig", "AudioTagger", "AudioInputError", "CheckpointError", "HTSAT", "HTSATConfig",
           "load_torch_checkpoint", "models"]
__version__ = "0.1.0"
