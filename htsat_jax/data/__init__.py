"""Data: audio decoding and the one host resampler (``audio``), on-device resampling (``resample``),
grain pipelines over the prepared ArrayRecord datasets (``pipeline``), the data an experiment
config names (``experiment``), and synthetic sound-event scenes (``synthetic``, ``synthetic_dataset``)."""
