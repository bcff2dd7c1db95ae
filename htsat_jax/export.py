"""``python -m htsat_jax.export``: the documented entry point of :mod:`htsat_jax.inference.export`."""

import sys

from htsat_jax.inference.export import *  # noqa: F401,F403  (the module's public names)
from htsat_jax.inference.export import export_onnx, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
