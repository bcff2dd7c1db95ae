"""DESED TFDS builder (registers the dataset name "desed" on import)."""

from tfds_builders.desed.desed import CLASS_NAMES, CLIP_SAMPLES, SAMPLE_RATE, SPLITS, Desed

__all__ = ["CLASS_NAMES", "CLIP_SAMPLES", "SAMPLE_RATE", "SPLITS", "Desed"]
