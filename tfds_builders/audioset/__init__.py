"""AudioSet TFDS builder (registers the dataset name "audioset" on import).

CLASS_NAMES is None here: the 527 names come from the raw folder's class_labels_indices.csv
(`read_class_labels`) and are stored in the built dataset's info.metadata["class_names"].
"""

from tfds_builders.audioset.audioset import (
    CLASS_NAMES,
    CLIP_SAMPLES,
    NUM_CLASSES,
    SAMPLE_RATE,
    Audioset,
    builder_kwargs,
    read_class_labels,
)

__all__ = [
    "CLASS_NAMES", "CLIP_SAMPLES", "NUM_CLASSES", "SAMPLE_RATE", "Audioset", "builder_kwargs", "read_class_labels",
]
