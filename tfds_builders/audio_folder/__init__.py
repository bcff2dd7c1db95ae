"""audio_folder TFDS builder: your own folder of recordings (registers "audio_folder" on import).

Configs "32k" (default, SAMPLE_RATE) and "16k" set the stored rate; `dataset_name=` (the
`--name` of tools/prepare_data.py) stores a dataset under its own config name instead. CLASS_NAMES
is None here: the names come from the raw folder and are stored in info.metadata["class_names"].
"""

from tfds_builders.audio_folder.audio_folder import (
    CLASS_NAMES,
    DEFAULT_SPLIT_FRACTIONS,
    DEFAULT_SPLIT_SEED,
    LABEL_FILES,
    SAMPLE_RATE,
    AudioFolder,
    AudioFolderConfig,
    RawFolder,
    builder_kwargs,
    rate_config,
    scan_folder,
    seeded_split,
)

__all__ = [
    "CLASS_NAMES", "DEFAULT_SPLIT_FRACTIONS", "DEFAULT_SPLIT_SEED", "LABEL_FILES", "SAMPLE_RATE", "AudioFolder",
    "AudioFolderConfig", "RawFolder", "builder_kwargs", "rate_config", "scan_folder", "seeded_split",
]
