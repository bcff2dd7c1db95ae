"""``python -m htsat_jax.predict``: the documented entry point of :mod:`htsat_jax.inference.predict`."""

import sys

from htsat_jax.inference.predict import *  # noqa: F401,F403  (the module's public names)
from htsat_jax.inference.predict import main, run  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
