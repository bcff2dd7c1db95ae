"""Foreign checkpoints -> this project's model directories.

One module per source layout, each filling a :class:`~htsat_jax.convert.common.ConversionReport`:

* ``torch_htsat``   official PyTorch HTS-AT ``.ckpt`` (``python -m htsat_jax.convert torch-htsat``)
* ``swin_imagenet`` Microsoft Swin ImageNet ``.pth`` (HTS-AT backbone initialisation)
* ``ast``           official AST ``.pth`` and transformers AST (``torch-ast``, ``hf-ast``), DeiT import

``python -m htsat_jax.convert COMMAND INPUT OUTPUT_DIR`` writes a model directory
(``htsat_jax.checkpoint``) that every entry point loads.
"""

from htsat_jax.convert.common import CheckpointError, ConversionReport
from htsat_jax.convert.torch_htsat import load_torch_checkpoint

__all__ = ["CheckpointError", "ConversionReport", "load_torch_checkpoint"]
