"""Synthetic sound-event scenes as a TFDS dataset (``synthetic_events``); importing registers it."""

from htsat_jax.data.synthetic_dataset import (
    CLASS_NAMES,
    SAMPLE_RATE,
    SyntheticEvents,
    SyntheticEventsConfig,
)

__all__ = ["CLASS_NAMES", "SAMPLE_RATE", "SyntheticEvents", "SyntheticEventsConfig"]
