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

from htsat_jax import models
from htsat_jax.convert import CheckpointError, load_torch_checkpoint
from htsat_jax.inference.tagger import AudioInputError, AudioTagger
from htsat_jax.models.ast import AST, ASTConfig
from htsat_jax.models.htsat import HTSAT, HTSATConfig

__all__ = ["AST", "ASTConfig", "AudioTagger", "AudioInputError", "CheckpointError", "HTSAT", "HTSATConfig",
           "load_torch_checkpoint", "models"]
__version__ = "0.1.0"
