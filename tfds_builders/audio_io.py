"""Audio decoding for the builders: an alias of :mod:`htsat_jax.data.audio`.

The decoder lives with the rest of the data code in ``htsat_jax.data`` (the trainer and the tagger
use it too); builders depend on ``htsat_jax``, never the other way round.
"""

import sys

from htsat_jax.data import audio as _audio

sys.modules[__name__] = _audio
