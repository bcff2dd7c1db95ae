"""TFDS builder for the procedurally generated sound-event scenes (htsat_jax.data.synthetic).

Nothing is downloaded and no manual_dir is needed: every split is generated from
a seed. Build it with the Python API (the ``tfds build`` CLI needs TensorFlow)::

    from htsat_jax.data.synthetic_dataset import SyntheticEvents
    SyntheticEvents(config="tiny", data_dir="/tmp/tfds").download_and_prepare()

Configs: ``default`` (1200/200/200 scenes of 10 s at 32 kHz, about 1 GB, enough for
the 2-core CPU demo), ``tiny`` (16/8/8, for tests). A custom size/rate/seed is a
``SyntheticEventsConfig(name=..., ...)`` passed as ``config=``.

Features (project conventions): ``id`` text, ``waveform`` int16 (samples,) stored
as raw bytes, ``labels`` uint8 (10,) multi-hot, ``events`` {onset, offset float32
seconds; label int32}. Metadata: sample_rate, class_names.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from htsat_jax.data import synthetic

SAMPLE_RATE = synthetic.DEFAULT_SAMPLE_RATE
CLASS_NAMES = list(synthetic.CLASS_NAMES)

# Split name -> the synthetic stream id, so splits never share a scene.
_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass
class SyntheticEventsConfig(tfds.core.BuilderConfig):
    """Sizes and generation settings of one variant of the dataset."""

    num_train: int = 1200
    num_validation: int = 200
    num_test: int = 200
    sample_rate: int = SAMPLE_RATE
    duration_s: float = synthetic.DEFAULT_DURATION_S
    seed: int = 0


def _to_int16(waveform: np.ndarray) -> np.ndarray:
    # Project convention for float -> int16: round(clip(x, -1, 1) * 32767).
    return np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)


class SyntheticEvents(tfds.core.GeneratorBasedBuilder):
    """Synthetic 10-class sound-event scenes with strong (onset/offset) labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticEventsConfig(name="default", description="1200/200/200 scenes, 10 s @ 32 kHz."),
        SyntheticEventsConfig(name="tiny", num_train=16, num_validation=8, num_test=8,
                              description="16/8/8 scenes, 10 s @ 32 kHz, for tests."),
        SyntheticEventsConfig(name="demo", num_train=480, num_validation=64, num_test=64,
                              description="480/64/64 scenes, 10 s @ 32 kHz, for `make demo`."),
    ]

    def __init__(self, *, file_format=None, **kwargs):
        # grain reads ArrayRecord, so make it the default instead of TFRecord.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "waveform": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                                 encoding=tfds.features.Encoding.BYTES),
                "labels": tfds.features.Tensor(shape=(len(CLASS_NAMES),), dtype=np.uint8),
                "events": {
                    "onset": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "offset": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "label": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                },
            }),
            metadata=tfds.core.MetadataDict(sample_rate=int(config.sample_rate),
                                            class_names=CLASS_NAMES,
                                            duration_s=float(config.duration_s),
                                            seed=int(config.seed)),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is generated
        config = self.builder_config
        sizes = {"train": config.num_train, "validation": config.num_validation,
                 "test": config.num_test}
        for split, size in sizes.items():
            if size < 1:
                raise ValueError(f"SyntheticEventsConfig {config.name!r}: num_{split} must be >= 1, "
                                 f"got {size}")
        return {split: self._generate_examples(split, size) for split, size in sizes.items()}

    def _generate_examples(self, split: str, num_scenes: int):
        config = self.builder_config
        scenes = synthetic.iter_scenes(num_scenes, config.seed, stream=_SPLIT_STREAMS[split],
                                       sample_rate=config.sample_rate,
                                       duration_s=config.duration_s)
        for i, (waveform, events) in enumerate(scenes):
            example_id = f"{split}/{i:06d}"
            yield example_id, {
                "id": example_id,
                "waveform": _to_int16(waveform),
                "labels": synthetic.events_to_multi_hot(events),
                "events": {
                    "onset": np.array([e[0] for e in events], np.float32),
                    "offset": np.array([e[1] for e in events], np.float32),
                    "label": np.array([e[2] for e in events], np.int32),
                },
            }


def build(data_dir: str, config: str | None = None) -> SyntheticEvents:
    """Generate the dataset (``config``: "default", "demo", "tiny", ...) into ``data_dir``; reused if there."""
    kwargs = {"config": config} if config else {}
    builder = SyntheticEvents(data_dir=data_dir, file_format="array_record", **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        try_download_gcs=False, download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    return builder
