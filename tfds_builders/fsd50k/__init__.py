"""FSD50K TFDS builder (registers the dataset name "fsd50k" on import).

Configs "16k" (default; SAMPLE_RATE, the LEAN/YAMNet rate) and "32k". CLASS_NAMES is None
here: the 200 names come from the raw folder's vocabulary.csv (`read_vocabulary`) and are
stored in the built dataset's info.metadata["class_names"].
"""

from tfds_builders.fsd50k.fsd50k import (
    CLASS_NAMES,
    NUM_CLASSES,
    SAMPLE_RATE,
    Fsd50k,
    Fsd50kConfig,
    rate_config,
    read_ground_truth,
    read_vocabulary,
)

__all__ = [
    "CLASS_NAMES", "NUM_CLASSES", "SAMPLE_RATE", "Fsd50k", "Fsd50kConfig", "rate_config",
    "read_ground_truth", "read_vocabulary",
]
