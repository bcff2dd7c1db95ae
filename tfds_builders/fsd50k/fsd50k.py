"""FSD50K (Freesound Dataset 50k: 51,197 clips of 0.3-30 s, 200 classes, multi-label).

Raw layout (the Zenodo release, extracted; `manual_dir` is the folder holding these, or a
folder holding them under `FSD50K/`):
    FSD50K.dev_audio/<fname>.wav     40,966 clips, 44.1 kHz mono 16-bit PCM
    FSD50K.eval_audio/<fname>.wav    10,231 clips
    FSD50K.ground_truth/dev.csv      header fname,labels,mids,split; labels and mids are quoted
                                     comma-separated lists; split is train or val
    FSD50K.ground_truth/eval.csv     header fname,labels,mids
    FSD50K.ground_truth/vocabulary.csv   NO header: index,label,mid (200 rows; index = output order)
(FSD50K.metadata/ and FSD50K.doc/ are not read.)

Download (nothing is fetched by the builder): Zenodo record 4060432,
https://zenodo.org/records/4060432/files/<name>?download=1 with <name> one of
    FSD50K.dev_audio.zip + FSD50K.dev_audio.z01 ... .z05   (one split archive)
    FSD50K.eval_audio.zip + FSD50K.eval_audio.z01          (one split archive)
    FSD50K.ground_truth.zip, FSD50K.metadata.zip, FSD50K.doc.zip
A split archive has to be joined before it is extracted, e.g.
    zip -s 0 FSD50K.dev_audio.zip --out dev_unsplit.zip && unzip dev_unsplit.zip

Splits: "train" = dev.csv rows with split == train (36,796), "validation" = split == val (4,170),
"test" = eval.csv (10,231). Every clip keeps its own length, resampled to the config's rate
(16 kHz by default, the rate of LEAN/YAMNet; config "32k" for HTS-AT/AST) with soxr_hq, so its
length is ceil(n * rate / 44100). Chunking into 1 s windows (training) and chunked evaluation
are the pipeline's job: only whole clips are stored. Labels are multi-hot over the 200
vocabulary.csv classes in index order; the names are stored in info.metadata["class_names"].
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 16000  # rate of the default config "16k" (LEAN / YAMNet input)
NUM_CLASSES = 200
# The 200 names are not shipped here: they are read from the user's vocabulary.csv at build
# time and stored in info.metadata["class_names"] (use `read_vocabulary` for the CSV itself).
CLASS_NAMES: tuple[str, ...] | None = None

_ARCHIVE_ROOT = "FSD50K"
GROUND_TRUTH_DIR = pathlib.Path("FSD50K.ground_truth")
DEV_CSV = GROUND_TRUTH_DIR / "dev.csv"
EVAL_CSV = GROUND_TRUTH_DIR / "eval.csv"
VOCABULARY_CSV = GROUND_TRUTH_DIR / "vocabulary.csv"
DEV_AUDIO_DIR = pathlib.Path("FSD50K.dev_audio")
EVAL_AUDIO_DIR = pathlib.Path("FSD50K.eval_audio")

# dev.csv `split` value -> TFDS split name. eval.csv becomes TEST_SPLIT.
DEV_SPLITS: dict[str, str] = {"train": "train", "val": "validation"}
TEST_SPLIT = "test"
_DEV_COLUMNS = ("fname", "labels", "mids", "split")
_EVAL_COLUMNS = ("fname", "labels", "mids")
_ZENODO = "https://zenodo.org/records/4060432"


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """vocabulary.csv sorted by its index column: `labels[i]` and `mids[i]` are class i."""

    labels: tuple[str, ...]
    mids: tuple[str, ...]

    @property
    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def mid_index(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids)}


@dataclasses.dataclass(frozen=True)
class Clip:
    """One ground-truth row: Freesound id, class indices (sorted), and where it was listed."""

    fname: str
    labels: tuple[int, ...]
    line_no: int


def read_vocabulary(path: pathlib.Path, num_classes: int = NUM_CLASSES) -> Vocabulary:
    """Parses vocabulary.csv (no header; rows `index,label,mid`; indices 0..num_classes-1, any order).

    Raises:
      RawDataError: a malformed row, a header line, a duplicate or missing index, label or mid,
        or a class count other than `num_classes`, naming the file (and line).
    """
    by_index: dict[int, tuple[str, str, int]] = {}
    seen_labels: dict[str, int] = {}
    seen_mids: dict[str, int] = {}
    for line_no, fields in common.read_rows(path):
        if len(fields) != 3:
            raise common.row_error(path, line_no, f"expected 3 fields index,label,mid, got {len(fields)}: {fields}")
        index_s, label, mid = fields
        try:
            index = int(index_s)
        except ValueError:
            raise common.row_error(
                path, line_no, f"index {index_s!r} is not an integer (vocabulary.csv has no header line)"
            ) from None
        if not 0 <= index < num_classes:
            raise common.row_error(path, line_no, f"index {index} outside 0..{num_classes - 1}")
        if index in by_index:
            raise common.row_error(path, line_no, f"index {index} already used on line {by_index[index][2]}")
        if not label or label in seen_labels:
            raise common.row_error(path, line_no, f"empty or duplicate label {label!r}")
        if not mid or mid in seen_mids:
            raise common.row_error(path, line_no, f"empty or duplicate mid {mid!r}")
        by_index[index] = (label, mid, line_no)
        seen_labels[label] = line_no
        seen_mids[mid] = line_no
    if len(by_index) != num_classes:
        missing = sorted(set(range(num_classes)) - set(by_index))
        raise common.RawDataError(
            f"{path}: lists {len(by_index)} classes, FSD50K has {num_classes} (missing indices {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''})"
        )
    ordered = [by_index[i] for i in range(num_classes)]
    return Vocabulary(tuple(r[0] for r in ordered), tuple(r[1] for r in ordered))


def read_ground_truth(path: pathlib.Path, vocab: Vocabulary, *, with_split: bool) -> dict[str, list[Clip]]:
    """Parses dev.csv (`with_split=True`) or eval.csv into clips grouped by the csv's split value
    (eval.csv: everything under ""). Label lists are parsed by the csv module, never split on
    the raw line's commas.

    Raises:
      RawDataError: missing header columns, a malformed row, an unknown label or mid, mids that do
        not name the same classes as labels, a duplicate fname or an unknown split value,
        naming the file and line.
    """
    required = _DEV_COLUMNS if with_split else _EVAL_COLUMNS
    rows = common.read_rows(path)
    try:
        line_no, header = next(rows)
    except StopIteration:
        raise common.RawDataError(f"{path}: empty file, expected a header {','.join(required)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise common.row_error(path, line_no, f"header lacks column(s) {missing}; got {header}")
    col = {name: header.index(name) for name in required}
    label_index, mid_index = vocab.label_index, vocab.mid_index
    out: dict[str, list[Clip]] = {}
    seen: dict[str, int] = {}
    for line_no, fields in rows:
        if len(fields) != len(header):
            raise common.row_error(path, line_no, f"expected {len(header)} fields, got {len(fields)}: {fields}")
        fname = fields[col["fname"]]
        if not fname or "/" in fname or "\\" in fname:
            raise common.row_error(path, line_no, f"malformed fname {fname!r}")
        if fname in seen:
            raise common.row_error(path, line_no, f"fname {fname} already listed on line {seen[fname]}")
        labels = [x.strip() for x in fields[col["labels"]].split(",") if x.strip()]
        if not labels:
            raise common.row_error(path, line_no, f"clip {fname} has no labels")
        classes = set()
        for label in labels:
            if label not in label_index:
                raise common.row_error(path, line_no, f"unknown label {label!r} (not in {VOCABULARY_CSV.name})")
            classes.add(label_index[label])
        mid_classes = set()
        for mid in (x.strip() for x in fields[col["mids"]].split(",") if x.strip()):
            if mid not in mid_index:
                raise common.row_error(path, line_no, f"unknown mid {mid!r} (not in {VOCABULARY_CSV.name})")
            mid_classes.add(mid_index[mid])
        if mid_classes != classes:
            raise common.row_error(
                path, line_no,
                f"mids {sorted(vocab.mids[i] for i in mid_classes)} do not match labels {sorted(labels)}",
            )
        split = ""
        if with_split:
            split = fields[col["split"]]
            if split not in DEV_SPLITS:
                raise common.row_error(path, line_no, f"split must be one of {sorted(DEV_SPLITS)}, got {split!r}")
        seen[fname] = line_no
        out.setdefault(split, []).append(Clip(fname, tuple(sorted(classes)), line_no))
    return out


def find_root(folder: pathlib.Path) -> pathlib.Path:
    """The FSD50K root inside `folder`: itself or `folder/FSD50K`, whichever holds the ground truth."""
    for candidate in (folder, folder / _ARCHIVE_ROOT):
        if (candidate / GROUND_TRUTH_DIR).is_dir():
            return candidate
    raise common.RawDataError(
        f"missing FSD50K ground truth: expected folder {folder / GROUND_TRUTH_DIR} "
        f"(or {folder / _ARCHIVE_ROOT / GROUND_TRUTH_DIR}); extract FSD50K.ground_truth.zip there"
    )


@dataclasses.dataclass
class Fsd50kConfig(tfds.core.BuilderConfig):
    """One stored sample rate of FSD50K."""

    sample_rate: int = SAMPLE_RATE


class Fsd50k(tfds.core.GeneratorBasedBuilder):
    """FSD50K clips at their own length, mono int16 at 16 kHz ("16k") or 32 kHz ("32k"),
    multi-hot labels over 200 classes; splits train/validation/test."""

    name = "fsd50k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: variable-length int16 waveforms, 200-class multi-hot labels."}
    BUILDER_CONFIGS = [
        Fsd50kConfig(name="16k", sample_rate=16000, description="16 kHz, the LEAN / YAMNet input rate."),
        Fsd50kConfig(name="32k", sample_rate=32000, description="32 kHz, the HTS-AT / AST input rate."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "16k"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download FSD50K from Zenodo ({_ZENODO}): FSD50K.dev_audio.zip with .z01-.z05, "
        "FSD50K.eval_audio.zip with .z01, and FSD50K.ground_truth.zip. Join each split archive "
        "(zip -s 0 FSD50K.dev_audio.zip --out dev_unsplit.zip), extract everything into one folder "
        "and point manual_dir at it (it must hold FSD50K.ground_truth/, FSD50K.dev_audio/, "
        "FSD50K.eval_audio/). See docs/DATASETS.md."
    )

    @property
    def sample_rate(self) -> int:
        return int(self.builder_config.sample_rate)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "FSD50K: 51,197 Freesound clips of 0.3-30 s, 200 AudioSet-ontology classes (smeared "
                "labels), mono int16 at their own length."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),  # the Freesound id (csv fname, file <fname>.wav)
                    "waveform": common.waveform_feature(),
                    "labels": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.uint8),
                    "num_samples": tfds.features.Scalar(dtype=np.int32),  # len(waveform)
                    "duration_s": tfds.features.Scalar(dtype=np.float32),  # original length
                }
            ),
            supervised_keys=("waveform", "labels"),
            homepage=_ZENODO,
            metadata=tfds.core.MetadataDict(
                sample_rate=self.sample_rate,
                clip_samples=None,  # variable length
                num_classes=NUM_CLASSES,
                class_names=[],  # filled from vocabulary.csv when the dataset is built
                class_mids=[],
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = common.explicit_manual_dir(dl_manager)
        if manual is None:
            raise common.RawDataError(
                "FSD50K needs a local folder (manual_dir); nothing is downloaded. " + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        root = find_root(manual)
        vocab = read_vocabulary(common.require_file(root / VOCABULARY_CSV, "FSD50K vocabulary"))
        dev = read_ground_truth(common.require_file(root / DEV_CSV, "FSD50K dev ground truth"), vocab, with_split=True)
        test = read_ground_truth(common.require_file(root / EVAL_CSV, "FSD50K eval ground truth"), vocab, with_split=False)
        common.require_dir(root / DEV_AUDIO_DIR, "FSD50K dev audio folder")
        common.require_dir(root / EVAL_AUDIO_DIR, "FSD50K eval audio folder")
        self.info.metadata["class_names"] = list(vocab.labels)
        self.info.metadata["class_mids"] = list(vocab.mids)
        self.info.metadata["omitted_splits"] = {}

        sources = {split: (DEV_AUDIO_DIR, dev.get(value, []), f"{DEV_CSV.as_posix()} rows with split={value}")
                   for value, split in DEV_SPLITS.items()}
        sources[TEST_SPLIT] = (EVAL_AUDIO_DIR, test.get("", []), EVAL_CSV.as_posix())
        generators = {}
        for split, (audio_dir, clips, what) in sources.items():
            if not clips:
                # TFDS cannot write an empty split (e.g. a dev.csv cut down to train rows).
                report = audio_io.SkipReport(self.name, split)
                common.finish_split(self, report, allow_empty=True)
                omitted = dict(self.info.metadata["omitted_splits"])
                omitted[split] = f"no {what}"
                self.info.metadata["omitted_splits"] = omitted
                continue
            generators[split] = self._generate_examples(root, split, audio_dir, clips)
        if not generators:
            raise common.RawDataError(f"{root}: {DEV_CSV} and {EVAL_CSV} list no clips")
        return generators

    def _generate_examples(
        self, root: pathlib.Path, split: str, audio_dir: pathlib.Path, clips: list[Clip]
    ) -> Iterator[tuple[str, dict]]:
        report = audio_io.SkipReport(self.name, split)
        counts = np.zeros(NUM_CLASSES, np.int64)
        for clip in common.progress(clips, desc=f"{self.name} {split}"):
            rel = (audio_dir / f"{clip.fname}.wav").as_posix()
            try:
                audio = audio_io.load_mono(root / rel, self.sample_rate)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, rel)
                continue
            labels = np.zeros(NUM_CLASSES, np.uint8)
            labels[list(clip.labels)] = 1
            counts += labels
            report.num_written += 1
            yield clip.fname, {
                "id": clip.fname,
                "waveform": audio_io.to_int16(audio.waveform),
                "labels": labels,
                "num_samples": np.int32(audio.waveform.shape[0]),
                "duration_s": np.float32(audio.source_duration_s),
            }
        all_counts = dict(self.info.metadata.get("class_positive_counts", {}))
        all_counts[split] = [int(c) for c in counts]
        self.info.metadata["class_positive_counts"] = all_counts
        common.finish_split(self, report)


def rate_config(sample_rate: int) -> str:
    """Name of the builder config that stores `sample_rate` (e.g. 16000 -> "16k")."""
    for config in Fsd50k.BUILDER_CONFIGS:
        if config.sample_rate == sample_rate:
            return config.name
    raise ValueError(f"no FSD50K config stores {sample_rate} Hz; configs: "
                     f"{[(c.name, c.sample_rate) for c in Fsd50k.BUILDER_CONFIGS]}")

