"""ESC-50 TFDS builder (registers the dataset name "esc50" on import)."""

from tfds_builders.esc50.esc50 import CLASS_NAMES, CLIP_SAMPLES, SAMPLE_RATE, Esc50

__all__ = ["CLASS_NAMES", "CLIP_SAMPLES", "SAMPLE_RATE", "Esc50"]
