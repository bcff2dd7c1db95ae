"""Fake datasets shaped like the project's esc50 / speech_commands / audioset builders.

They follow the project's feature conventions but use their own names (fake_*), so they
never clash with the real builders when both are imported in one test session. Waveform
sample values encode (record, position) so tests can check length policies exactly.
"""

import numpy as np
import tensorflow_datasets as tfds

_WAVEFORM = tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                 encoding=tfds.features.Encoding.BYTES)


def fake_waveform(record: int, length: int) -> np.ndarray:
    """int16 (length,): a record-specific ramp, never all zeros."""
    return ((np.arange(length) * 7 + record * 1000) % 30000 + 1).astype(np.int16)


class FakeEsc50(tfds.core.GeneratorBasedBuilder):
    """10 clips of 5 s @ 32 kHz, 2 per fold, single label."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_RECORDS = 10
    CLIP_SAMPLES = 160000

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(), "waveform": _WAVEFORM,
                "label": tfds.features.ClassLabel(num_classes=50),
                "fold": tfds.features.Scalar(dtype=np.int32),
            }),
            metadata=tfds.core.MetadataDict(sample_rate=32000,
                                            class_names=[f"c{i}" for i in range(50)]))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(self.NUM_RECORDS):
            yield i, {"id": f"clip{i:02d}", "waveform": fake_waveform(i, self.CLIP_SAMPLES),
                      "label": (7 * i) % 50, "fold": i % 5 + 1}


class FakeSpeechCommands(tfds.core.GeneratorBasedBuilder):
    """Utterances of assorted lengths @ 16 kHz, single label (35 classes)."""

    VERSION = tfds.core.Version("1.0.0")
    LENGTHS = (16000, 12345, 7, 160000, 170000, 0)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(), "waveform": _WAVEFORM,
                "label": tfds.features.ClassLabel(num_classes=35),
            }),
            metadata=tfds.core.MetadataDict(sample_rate=16000,
                                            class_names=[f"w{i}" for i in range(35)]))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, length in enumerate(self.LENGTHS):
            yield i, {"id": f"utt{i}", "waveform": fake_waveform(i, length), "label": i}


class FakeAudioset(tfds.core.GeneratorBasedBuilder):
    """800 short multi-label clips @ 32 kHz over 8 classes with a very skewed class balance.

    Class c is the main label of a record with probability proportional to 2**-c
    (class 0 about 50 %, class 7 under 1 %); every 10th record also has class 0, and
    every 50th record has no label at all.

    Like the real AudioSet builder, the class count is a constructor argument, so the
    features of a prepared copy can differ from the registered class's defaults.
    """

    VERSION = tfds.core.Version("1.0.0")
    NUM_RECORDS = 800
    NUM_CLASSES = 8

    def __init__(self, *, num_classes: int = NUM_CLASSES, num_records: int = NUM_RECORDS,
                 **kwargs):
        self._num_classes = num_classes
        self._num_records = num_records
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(), "waveform": _WAVEFORM,
                "labels": tfds.features.Tensor(shape=(self._num_classes,), dtype=np.uint8),
            }),
            metadata=tfds.core.MetadataDict(
                sample_rate=32000, class_names=[f"k{i}" for i in range(self._num_classes)]))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    @classmethod
    def labels_of(cls, record: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
        rng = np.random.default_rng(record)
        weights = 2.0 ** -np.arange(num_classes)
        labels = np.zeros((num_classes,), np.uint8)
        if record % 50 == 49:
            return labels
        labels[rng.choice(num_classes, p=weights / weights.sum())] = 1
        if record % 10 == 0:
            labels[0] = 1
        return labels

    def _generate_examples(self):
        for i in range(self._num_records):
            length = 320050 if i == 3 else 100  # one long clip to exercise truncation
            yield i, {"id": f"yt{i:03d}", "waveform": fake_waveform(i, length),
                      "labels": self.labels_of(i, self._num_classes)}
