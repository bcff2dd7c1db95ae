"""htsat-jax: HTS-AT (hierarchical token-semantic audio transformer) in JAX/Flax.

Main entry points:
  AudioTagger            numpy audio in, clip-wise tags / frame-wise event maps / embeddings out
  HTSAT, HTSATConfig     the Flax NNX model and its configuration
  AST, ASTConfig         the AST baseline (htsat_jax.models.ast) in the same framework
  load_torch_checkpoint  official PyTorch checkpoints -> (config, weights)
"""

from htsat_jax.api import AudioInputError, AudioTagger
from htsat_jax.convert import CheckpointError, load_torch_checkpoint
from htsat_jax.models.ast import AST, ASTConfig
from htsat_jax.models.htsat import HTSAT, HTSATConfig

__all__ = ["AST", "ASTConfig", "AudioTagger", "AudioInputError", "CheckpointError", "HTSAT", "HTSATConfig",
           "load_torch_checkpoint"]
__version__ = "0.1.0"
