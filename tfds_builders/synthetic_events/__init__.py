"""Synthetic sound-event scenes as a TFDS dataset (``synthetic_events``); importing registers it."""

from tfds_builders.synthetic_events.synthetic_events import (
    CLASS_NAMES,
    SAMPLE_RATE,
    SyntheticEvents,
    SyntheticEventsConfig,
)

__all__ = ["CLASS_NAMES", "SAMPLE_RATE", "SyntheticEvents", "SyntheticEventsConfig"]
