"""grain input pipelines over the project's TFDS (ArrayRecord) datasets.

Data flow: the prepared ArrayRecord files opened for random access through TFDS
(features read from the files' ``features.json``, no TensorFlow) -> an index stream
(shuffled, or class-balanced for AudioSet) -> per-process shard -> read + length
policy (+ optional augmentation) in ``num_threads`` threads -> per-process batch
of numpy arrays. Waveforms stay int16 on the host (half the bytes of float32);
the cast and normalisation to [-1, 1] (divide by 32767) happen inside the jitted
step.

Batches (``B = global_batch_size // process_count`` rows, ``S`` = clip samples,
``C`` = classes):

====================  ==============  ===========================================
key                   dtype, shape    meaning
====================  ==============  ===========================================
``waveform``          int16 (B, S)    clip after the dataset's length policy
``target``            float32 (B, C)  multi-hot (one-hot for single-label sets)
``label``             int32 (B,)      class index; single-label datasets only
``id``                str (B,)        example id; host-only, never device_put it
``frame_target``      float32 (B, F,  per-frame strong labels; only with
                      C)              ``strong_label_frames=F`` on event datasets
``mask``              bool (B,)       eval only: False on padding rows
====================  ==============  ===========================================

Sharding: the train index stream is one global sequence (same seed everywhere);
process ``p`` of ``P`` takes positions ``p, p+P, p+2P, ...``. Global batch ``k``
is therefore exactly positions ``[k*G, (k+1)*G)`` of that sequence whatever
``P`` is, and the processes' rows are disjoint. Eval does the same over the
examples padded up to a whole number of global batches, so every process yields
the same number of batches (collectives never hang) and every example appears
exactly once across processes.

Checkpointing: the returned iterators are grain ``DatasetIterator`` objects;
``get_state()/set_state()`` or orbax
``ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it))`` /
``grain.checkpoint.CheckpointRestore(it)`` resume at exactly the next batch.

Label index cache: the class-balanced sampler, the ESC-50 fold filter and the
AudioSet "only labelled clips" eval filter need every record's label(s) (and
fold). Reading them means one pass over the split, so the result is cached as
``label_index-<split>.npz`` next to the prepared dataset (in its versioned
directory) and reused while the split's files are unchanged (names, sizes and
mtimes are checked). The pass shows a progress bar; it keeps only labels and folds,
but every record is still read in full because each holds all its features. If that
directory is read-only the index is kept in memory only.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Mapping

import grain
import numpy as np

logger = logging.getLogger(__name__)

PAD_OR_TRUNCATE = "pad_or_truncate"
SELF_CONCAT = "self_concat"
REPEAT_TO_LENGTH = "repeat_to_length"
LENGTH_POLICIES = (PAD_OR_TRUNCATE, SELF_CONCAT, REPEAT_TO_LENGTH)

# Threads beat worker processes on small hosts; on the 2-core dev VM two threads were
# fastest and eight no better than one (BENCHMARKS.md "Input pipeline").
DEFAULT_NUM_THREADS = min(8, max(2, os.cpu_count() or 2))


# --------------------------------------------------------------------------------------------
# Dataset descriptions
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the pipeline needs to know about one dataset.

    Attributes:
        name: short name used by configs and the CLI (``tfds_builders/<name>``).
        sample_rate: rate the waveforms must be stored at (checked against the
            dataset's metadata).
        clip_samples: length of every training/eval clip after the length policy.
        num_classes: number of classes, checked against the dataset's features; None
            takes the prepared dataset's count (AudioSet: 527 for the full ontology,
            fewer when it was built from a custom class list). ``open_source``
            returns the spec with the count filled in.
        multi_label: True for a ``labels`` multi-hot uint8 feature, False for a
            single ``label`` ClassLabel.
        length_policy: how a stored waveform becomes ``clip_samples`` long:
            ``pad_or_truncate`` (zero-pad or cut the end), ``self_concat`` (ESC-50:
            the clip followed by itself, then pad/truncate) or ``repeat_to_length``
            (Speech Commands: doubled until long enough, then truncated).
        balanced_train: default for the class-balanced train sampler (AudioSet).
        eval_requires_label: default for dropping eval clips without any positive
            label (the official AudioSet eval keeps only labelled clips).
        has_events: the dataset has strong labels (``events`` feature).
        tfds_name: the builder's TFDS name when it differs from ``name``.
    """

    name: str
    sample_rate: int
    clip_samples: int
    num_classes: int | None
    multi_label: bool
    length_policy: str = PAD_OR_TRUNCATE
    balanced_train: bool = False
    eval_requires_label: bool = False
    has_events: bool = False
    tfds_name: str | None = None

    def __post_init__(self):
        if self.length_policy not in LENGTH_POLICIES:
            raise ValueError(f"DatasetSpec {self.name!r}: length_policy must be one of "
                             f"{LENGTH_POLICIES}, got {self.length_policy!r}")
        if (self.sample_rate <= 0 or self.clip_samples <= 0
                or (self.num_classes is not None and self.num_classes <= 0)):
            raise ValueError(f"DatasetSpec {self.name!r}: sample_rate, clip_samples and "
                             f"num_classes must be positive, got {self}")

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    def at_sample_rate(self, sample_rate: int) -> "DatasetSpec":
        """The same recipe at another rate (clip duration kept, sample count rescaled)."""
        if sample_rate == self.sample_rate:
            return self
        return dataclasses.replace(
            self, sample_rate=int(sample_rate),
            clip_samples=int(round(self.clip_samples * sample_rate / self.sample_rate)))


_TEN_S_32K = 320000
DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> None:
    """Adds (or replaces) a dataset description, e.g. for a custom builder."""
    DATASETS[spec.name] = spec


for _spec in (
        DatasetSpec("audioset", 32000, _TEN_S_32K, None, multi_label=True,
                    balanced_train=True, eval_requires_label=True),
        DatasetSpec("esc50", 32000, _TEN_S_32K, 50, multi_label=False,
                    length_policy=SELF_CONCAT),
        DatasetSpec("speech_commands", 16000, 160000, 35, multi_label=False,
                    length_policy=REPEAT_TO_LENGTH, tfds_name="speech_commands_v2"),
        DatasetSpec("desed", 32000, _TEN_S_32K, 10, multi_label=True, has_events=True),
        # Clips of 0.3-30 s at 16 kHz (the builder's default config; "32k" exists too); recipes set
        # their own clip length (LEAN: 1 s crops for training, whole clips in 1 s chunks for eval).
        DatasetSpec("fsd50k", 16000, 16000, 200, multi_label=True),
        # Your own folder of sounds (tfds_builders/audio_folder, opened as audio_folder/NAME): the
        # rate, classes, single/multi-label and events come from what the builder recorded.
        DatasetSpec("audio_folder", 32000, 320000, None, multi_label=True),
        DatasetSpec("synthetic_events", 32000, _TEN_S_32K, 10, multi_label=True,
                    has_events=True),
):
    register_dataset(_spec)


def get_dataset_spec(dataset: str) -> DatasetSpec:
    """The registered description of ``dataset`` (clear error for unknown names)."""
    name = dataset.split("/")[0]
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}. Known: {sorted(DATASETS)}; add others "
                         "with input_pipeline.register_dataset(DatasetSpec(...)).")
    return DATASETS[name]


# --------------------------------------------------------------------------------------------
# Length policies and augmentation (int16 in, int16 out)
# --------------------------------------------------------------------------------------------


def pad_or_truncate(waveform: np.ndarray, num_samples: int, start: int = 0) -> np.ndarray:
    """(n,) -> (num_samples,): zero-pads the end, or keeps ``[start, start + num_samples)``."""
    if waveform.shape[0] >= num_samples:
        return waveform[start:start + num_samples]
    out = np.zeros((num_samples,), dtype=waveform.dtype)
    out[:waveform.shape[0]] = waveform
    return out


def self_concat(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """ESC-50 recipe: the clip followed by itself (5 s -> 10 s), then pad/truncate."""
    return pad_or_truncate(np.concatenate([waveform, waveform]), num_samples)


def repeat_to_length(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """Speech Commands recipe: doubled until >= num_samples, then truncated.

    Doubling repeatedly is a periodic repetition of the clip, so this equals
    tiling; an empty clip gives silence instead of looping forever.
    """
    if waveform.shape[0] == 0:
        return np.zeros((num_samples,), dtype=waveform.dtype)
    while waveform.shape[0] < num_samples:
        waveform = np.concatenate([waveform, waveform])
    return waveform[:num_samples]


def apply_length_policy(waveform: np.ndarray, policy: str, num_samples: int) -> np.ndarray:
    """Applies one of ``LENGTH_POLICIES``: (n,) -> (num_samples,)."""
    if policy == PAD_OR_TRUNCATE:
        return pad_or_truncate(waveform, num_samples)
    if policy == SELF_CONCAT:
        return self_concat(waveform, num_samples)
    if policy == REPEAT_TO_LENGTH:
        return repeat_to_length(waveform, num_samples)
    raise ValueError(f"Unknown length policy {policy!r}; expected one of {LENGTH_POLICIES}")


def events_to_frame_targets(onsets: np.ndarray, offsets: np.ndarray, labels: np.ndarray, *,
                            num_frames: int, clip_seconds: float,
                            num_classes: int) -> np.ndarray:
    """Strong labels -> float32 (num_frames, num_classes).

    Frame ``k`` covers ``[k, k + 1) * clip_seconds / num_frames`` and is active for a
    class when an event of that class overlaps it (HTS-AT: 1024 frames per 10 s).
    """
    out = np.zeros((num_frames, num_classes), dtype=np.float32)
    frame_s = clip_seconds / num_frames
    for onset, offset, label in zip(onsets, offsets, labels):
        first = max(int(np.floor(onset / frame_s)), 0)
        last = min(int(np.ceil(offset / frame_s)), num_frames)  # exclusive
        if last > first:
            out[first:last, int(label)] = 1.0
    return out


# --------------------------------------------------------------------------------------------
# Opening a prepared dataset
# --------------------------------------------------------------------------------------------


def tfds_name(dataset: str, builder_config: str | None = None) -> str:
    """The TFDS name of a registered dataset: ("speech_commands", "cfg") -> "speech_commands_v2/cfg"."""
    short, _, config = dataset.partition("/")
    if builder_config:
        if config:
            raise ValueError(f"Give the builder config either in the name ({dataset!r}) or as "
                             f"builder_config={builder_config!r}, not both")
        config = builder_config
    base = get_dataset_spec(short).tfds_name or short
    return f"{base}/{config}" if config else base


def open_source(dataset: str, *, data_dir: str | os.PathLike, split: str,
                builder_config: str | None = None, sample_rate: int | None = None,
                decoders: Any = None, clip_seconds: float | None = None,
                length_policy: str | None = None) -> tuple[Any, DatasetSpec]:
    """Opens a prepared dataset for random access and checks it against its spec.

    Works from the files alone (``features.json``, ``metadata.json``): the builder
    package need not be imported.

    Args:
        dataset: registered dataset name (optionally "name/config").
        data_dir: the TFDS data_dir the dataset was prepared into.
        split: TFDS split, slicing allowed ("train[:10%]").
        builder_config: builder config name (e.g. "tiny"); None = the default one.
        sample_rate: the rate the caller expects (the stored rate,
            info.metadata["sample_rate"], must match); None = whatever rate the dataset was
            prepared at (the trainer resamples on device when its model runs at another).
        decoders: forwarded to ``tfds.data_source``.
        clip_seconds, length_policy: the recipe's data policy (None: the registered default).

    Returns:
        (source, spec): an ``ArrayRecordDataSource`` and the spec at that rate, with
        ``num_classes`` filled in from the dataset when the registry leaves it open.
    """
    import tensorflow_datasets as tfds  # heavy import, only when data is opened

    spec = get_dataset_spec(dataset)
    if sample_rate is not None:
        spec = spec.at_sample_rate(sample_rate)
    if length_policy is not None:
        spec = dataclasses.replace(spec, length_policy=length_policy)
    name = tfds_name(dataset, builder_config)
    base = os.path.join(os.fspath(data_dir), name.split("/")[0])
    if not os.path.isdir(base):
        raise FileNotFoundError(
            f"No prepared dataset {name!r} under data_dir={os.fspath(data_dir)!r} (missing {base}). "
            "Prepare it first (tools/prepare_data.py, or the builder's download_and_prepare).")
    if "/" in name and not os.path.isdir(os.path.join(base, name.split("/")[1])):
        available = sorted(d for d in os.listdir(base)
                           if os.path.isdir(os.path.join(base, d)) and not d.startswith("."))
        raise FileNotFoundError(f"Dataset {name.split('/')[0]!r} has no prepared config "
                                f"{name.split('/')[1]!r} under {base}; prepared: {available}")
    try:
        # Read features from the prepared files, not from builder code: a registered
        # builder whose features depend on constructor arguments (AudioSet with a
        # custom class list) would otherwise decode with the wrong shapes.
        builder = tfds.core.read_only_builder.builder_from_files(name, data_dir=os.fspath(data_dir))
        source = builder.as_data_source(split=split, decoders=decoders)
    except Exception as e:  # tfds errors can list every known dataset; keep the first line
        raise ValueError(f"Could not open {name!r} split {split!r} in {os.fspath(data_dir)!r}: "
                         f"{str(e).splitlines()[0]}") from e
    stored_rate = (source.dataset_info.metadata or {}).get("sample_rate")
    if sample_rate is None and stored_rate is not None:
        spec = spec.at_sample_rate(int(stored_rate))
    if clip_seconds is not None:
        spec = dataclasses.replace(spec, clip_samples=int(round(clip_seconds * spec.sample_rate)))
    spec = _check_source(source, spec, name)
    return source, spec


def _check_source(source: Any, spec: DatasetSpec, name: str) -> DatasetSpec:
    info = source.dataset_info
    metadata = info.metadata or {}
    # Dataset facts the builder recorded win over the registered defaults (audio_folder datasets
    # are single- or multi-label, with or without events, depending on the user's files).
    facts = {k: bool(metadata[k]) for k in ("multi_label", "has_events") if k in metadata}
    if facts:
        spec = dataclasses.replace(spec, **facts)
    stored_rate = metadata.get("sample_rate")
    if stored_rate is None:
        raise ValueError(f"Dataset {name!r} at {info.data_dir} has no 'sample_rate' in its "
                         "metadata, so its rate cannot be checked; rebuild it with the project's "
                         "builder.")
    if int(stored_rate) != spec.sample_rate:
        raise ValueError(
            f"Sample-rate mismatch for {name!r} at {info.data_dir}: stored at {int(stored_rate)} Hz "
            f"but the pipeline expects {spec.sample_rate} Hz. Rebuild the dataset at "
            f"{spec.sample_rate} Hz, or pass sample_rate={int(stored_rate)} if the model runs "
            "at that rate.")
    features = info.features
    if "waveform" not in features:
        raise ValueError(f"Dataset {name!r} has no 'waveform' feature (has {list(features)})")
    if spec.multi_label:
        if "labels" not in features:
            raise ValueError(f"Dataset {name!r} is multi-label but has no 'labels' feature "
                             f"(has {list(features)})")
        stored_classes = features["labels"].shape[-1]
    else:
        if "label" not in features:
            raise ValueError(f"Dataset {name!r} is single-label but has no 'label' feature "
                             f"(has {list(features)})")
        stored_classes = features["label"].num_classes
    if spec.num_classes is None:
        return dataclasses.replace(spec, num_classes=int(stored_classes))
    if stored_classes != spec.num_classes:
        raise ValueError(f"Dataset {name!r} has {stored_classes} classes but the {spec.name!r} "
                         f"recipe expects {spec.num_classes}")
    return spec


def _has_feature(source: Any, key: str) -> bool:
    return key in source.dataset_info.features


# --------------------------------------------------------------------------------------------
# Label index (per-class record lists, folds), cached next to the dataset
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelIndex:
    """Labels of every record of one split, grouped by class.

    Attributes:
        num_records: records in the split.
        num_classes: classes.
        class_offsets: int64 (num_classes + 1,); the records having class ``c`` are
            ``class_rows[class_offsets[c]:class_offsets[c + 1]]`` (sorted).
        class_rows: int64 (number of (record, positive class) pairs,).
        fold: int32 (num_records,) or None when the dataset has no ``fold`` feature.
    """

    num_records: int
    num_classes: int
    class_offsets: np.ndarray
    class_rows: np.ndarray
    fold: np.ndarray | None = None

    def rows_of_class(self, class_index: int) -> np.ndarray:
        return self.class_rows[self.class_offsets[class_index]:self.class_offsets[class_index + 1]]

    def class_counts(self) -> np.ndarray:
        return np.diff(self.class_offsets)

    def labelled_mask(self) -> np.ndarray:
        """bool (num_records,): records with at least one positive label."""
        mask = np.zeros((self.num_records,), dtype=bool)
        mask[self.class_rows] = True
        return mask

    @classmethod
    def from_pairs(cls, rows: np.ndarray, classes: np.ndarray, num_records: int,
                   num_classes: int, fold: np.ndarray | None = None) -> "LabelIndex":
        """Builds the index from (record, class) pairs, one per positive label."""
        rows = np.asarray(rows, dtype=np.int64)
        classes = np.asarray(classes, dtype=np.int64)
        if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"class index out of range [0, {num_classes}) in label index")
        order = np.lexsort((rows, classes))
        offsets = np.zeros((num_classes + 1,), dtype=np.int64)
        np.cumsum(np.bincount(classes, minlength=num_classes), out=offsets[1:])
        return cls(num_records, num_classes, offsets, rows[order], fold)


def _split_files_fingerprint(dataset_dir: str, split: str) -> str:
    base_split = split.split("[")[0]
    # Record shards are named "<dataset>-<split>.<format>-NNNNN-of-NNNNN".
    paths = sorted(glob.glob(os.path.join(glob.escape(dataset_dir), f"*-{base_split}.*-of-*")))
    if not paths:
        raise FileNotFoundError(f"No record files for split {base_split!r} in {dataset_dir}")
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def label_index_path(dataset_dir: str, split: str) -> str:
    """Where the label index of ``split`` is cached inside the dataset's directory."""
    slug = re.sub(r"[^A-Za-z0-9_.%-]+", "_", split)
    return os.path.join(dataset_dir, f"label_index-{slug}.npz")


class _ExtractLabels(grain.transforms.Map):
    """record -> (list of positive class indices, fold) without touching the waveform."""

    def __init__(self, multi_label: bool, with_fold: bool):
        self._multi_label = multi_label
        self._with_fold = with_fold

    def map(self, record):
        if self._multi_label:
            classes = np.flatnonzero(np.asarray(record["labels"]))
        else:
            classes = np.asarray([int(record["label"])])
        fold = int(record["fold"]) if self._with_fold else 0
        return classes, fold


def load_label_index(dataset: str, *, data_dir: str | os.PathLike, split: str,
                     builder_config: str | None = None, sample_rate: int | None = None,
                     num_threads: int = DEFAULT_NUM_THREADS, use_cache: bool = True,
                     show_progress: bool = True) -> LabelIndex:
    """The split's ``LabelIndex``, read from the .npz cache or computed once and cached.

    The computation reads every record once (with a progress bar) but does not
    decode waveforms; the cache is ``label_index-<split>.npz`` in the dataset's
    versioned directory and is rebuilt when the split's files change.
    """
    import tensorflow_datasets as tfds

    source, spec = open_source(dataset, data_dir=data_dir, split=split,
                               builder_config=builder_config, sample_rate=sample_rate,
                               decoders={"waveform": tfds.decode.SkipDecoding()})
    return _label_index_for_source(source, spec, split, num_threads=num_threads,
                                   use_cache=use_cache, show_progress=show_progress)


def _label_index_for_source(source: Any, spec: DatasetSpec, split: str, *, num_threads: int,
                            use_cache: bool, show_progress: bool) -> LabelIndex:
    dataset_dir = os.fspath(source.dataset_info.data_dir)
    path = label_index_path(dataset_dir, split)
    fingerprint = _split_files_fingerprint(dataset_dir, split)
    num_records = len(source)
    if use_cache and os.path.exists(path):
        with np.load(path, allow_pickle=False) as cached:
            if (str(cached["fingerprint"]) == fingerprint
                    and int(cached["num_records"]) == num_records
                    and int(cached["num_classes"]) == spec.num_classes):
                fold = cached["fold"] if bool(cached["has_fold"]) else None
                return LabelIndex(num_records, spec.num_classes, cached["class_offsets"],
                                  cached["class_rows"], fold)
        logger.info("Label index %s is stale (dataset files changed); rebuilding", path)

    with_fold = _has_feature(source, "fold")
    extract = (grain.MapDataset.source(source).map(_ExtractLabels(spec.multi_label, with_fold))
               .to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                  prefetch_buffer_size=max(4 * num_threads, 16))))
    rows, classes = [], []
    fold = np.zeros((num_records,), dtype=np.int32)
    from tqdm.auto import tqdm
    progress = tqdm(extract, total=num_records, disable=not show_progress,
                    desc=f"Indexing labels of {spec.name} {split}", unit="clip")
    for row, (positives, record_fold) in enumerate(progress):
        rows.append(np.full(positives.shape, row, dtype=np.int64))
        classes.append(positives)
        fold[row] = record_fold
    index = LabelIndex.from_pairs(
        np.concatenate(rows) if rows else np.zeros((0,), np.int64),
        np.concatenate(classes) if classes else np.zeros((0,), np.int64),
        num_records, spec.num_classes, fold if with_fold else None)
    if use_cache:
        try:
            tmp = path + f".tmp{os.getpid()}.npz"
            np.savez(tmp, fingerprint=np.asarray(fingerprint), num_records=num_records,
                     num_classes=spec.num_classes, class_offsets=index.class_offsets,
                     class_rows=index.class_rows, has_fold=with_fold,
                     fold=fold if with_fold else np.zeros((0,), np.int32))
            os.replace(tmp, path)  # atomic: concurrent processes never see a partial file
        except OSError as e:
            logger.warning("Could not cache the label index at %s (%s); it stays in memory", path, e)
    return index


def _selected_records(index: LabelIndex | None, num_records: int, folds: Sequence[int] | None,
                      require_label: bool, name: str) -> np.ndarray:
    """int64 record indices kept by the fold filter and the labelled-only filter."""
    keep = np.ones((num_records,), dtype=bool)
    if folds is not None:
        if index is None or index.fold is None:
            raise ValueError(f"folds={list(folds)} given but dataset {name!r} has no 'fold' feature")
        present = set(np.unique(index.fold).tolist())
        missing = sorted(set(int(f) for f in folds) - present)
        if missing:
            raise ValueError(f"Dataset {name!r} has no records in fold(s) {missing}; "
                             f"its folds are {sorted(present)}")
        keep &= np.isin(index.fold, np.asarray(list(folds), dtype=np.int32))
    if require_label:
        keep &= index.labelled_mask()
    selected = np.flatnonzero(keep)
    if selected.size == 0:
        raise ValueError(f"No records of {name!r} left after filtering (folds={folds}, "
                         f"require_label={require_label})")
    return selected


# --------------------------------------------------------------------------------------------
# Index streams
# --------------------------------------------------------------------------------------------


class BalancedClassSampler(grain.MapDataset):
    """The official AudioSet class-balanced queue as a random-access dataset of record indices.

    One epoch has ``epoch_length`` entries built by rounds: the non-empty classes in
    a fresh random order, and for each of them one record drawn uniformly (with
    replacement) from that class's list. The queue of epoch ``e`` is generated
    from ``(seed, e)``, so element ``i`` is a pure function of ``i`` and the
    iterator state (a position) is all that a checkpoint needs.

    Classes without any record are skipped (the official code would fail on them).
    """

    def __init__(self, class_rows: Sequence[np.ndarray], epoch_length: int, seed: int):
        super().__init__()
        lists = [np.asarray(r, dtype=np.int64) for r in class_rows]
        self._counts = np.asarray([r.size for r in lists if r.size], dtype=np.int64)
        if self._counts.size == 0:
            raise ValueError("BalancedClassSampler: every class list is empty")
        if epoch_length < 1:
            raise ValueError(f"BalancedClassSampler: epoch_length must be >= 1, got {epoch_length}")
        self._flat = np.concatenate([r for r in lists if r.size])
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)[:-1]])
        self._epoch_length = int(epoch_length)
        self._seed = int(seed)
        self._init_cache()

    def _init_cache(self):
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}

    def __getstate__(self):  # locks do not pickle (grain worker processes pickle the pipeline)
        state = self.__dict__.copy()
        del state["_lock"], state["_cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_cache()

    def __len__(self) -> int:
        return self._epoch_length

    def __str__(self) -> str:
        return (f"BalancedClassSampler(classes={self._counts.size}, "
                f"epoch_length={self._epoch_length}, seed={self._seed})")

    def epoch_queue(self, epoch: int) -> np.ndarray:
        """int64 (epoch_length,) record indices of one epoch."""
        with self._lock:
            queue = self._cache.get(epoch)
            if queue is None:
                queue = self._make_queue(epoch)
                if len(self._cache) >= 2:  # threads only ever straddle one epoch boundary
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = queue
            return queue

    def _make_queue(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, epoch])
        num_classes = self._counts.size
        rounds = -(-self._epoch_length // num_classes)
        order = rng.permuted(np.tile(np.arange(num_classes), (rounds, 1)), axis=1).ravel()
        order = order[:self._epoch_length]
        draws = (rng.random(order.shape[0]) * self._counts[order]).astype(np.int64)
        return self._flat[self._offsets[order] + draws]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, position = divmod(int(index), self._epoch_length)
        return int(self.epoch_queue(epoch)[position])


class _BatchBlockShard(grain.MapDataset):
    """This process's rows of each global batch: rows ``[p*L, (p+1)*L)`` of batch ``k``.

    Global batch ``k`` is elements ``[k*G, (k+1)*G)`` of the parent stream (``G`` rows, ``L =
    G / process_count`` per process). Taking contiguous blocks (not a stride) means the global
    array that ``jax.make_array_from_process_local_data`` assembles in process order has the
    same rows in the same order for any process count, so per-row randomness (SpecAugment,
    mixup partners) and therefore the trained parameters do not depend on the cluster shape.
    """

    def __init__(self, parent: grain.MapDataset, process_index: int, process_count: int,
                 local_batch: int):
        super().__init__(parent)
        self._p, self._n, self._local = process_index, process_count, local_batch
        self._global = local_batch * process_count
        self._length = (len(parent) // self._global) * local_batch

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        return f"BatchBlockShard(process={self._p}/{self._n}, local_batch={self._local})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(int(index), self._local)
        return self._parent[batch * self._global + self._p * self._local + row]


# --------------------------------------------------------------------------------------------
# Record -> example
# --------------------------------------------------------------------------------------------


class _ReadExample:
    """Record index -> example dict (one row of a batch), with optional augmentation.

    Call it (grain ``map``) for plain reads, or pass ``random_map`` to grain's
    ``random_map`` for augmented reads; grain derives the per-element Generator from
    the seed and the element's position, so augmentation is reproducible on resume.
    """

    def __init__(self, source: Any, spec: DatasetSpec, *, with_ids: bool,
                 strong_label_frames: int, time_shift: bool, random_crop: bool,
                 max_events: int = 0, with_length: bool = False, with_strong_flag: bool = False,
                 has_strong_feature: bool = False):
        self._source = source
        self._with_strong_flag = with_strong_flag
        self._has_strong_feature = has_strong_feature
        self._with_length = with_length
        self._spec = spec
        self._with_ids = with_ids
        self._max_events = max_events
        self._strong_label_frames = strong_label_frames
        self._time_shift = time_shift
        self._random_crop = random_crop

    def padding_example(self) -> dict[str, np.ndarray]:
        spec = self._spec
        example = {"waveform": np.zeros((spec.clip_samples,), np.int16),
                   "target": np.zeros((spec.num_classes,), np.float32)}
        if not spec.multi_label:
            example["label"] = np.int32(0)
        if self._with_ids:
            example["id"] = ""
        if self._strong_label_frames:
            example["frame_target"] = np.zeros(
                (self._strong_label_frames, spec.num_classes), np.float32)
        if self._max_events:
            example["events"] = _padded_events(None, self._max_events, "")
        if self._with_strong_flag:
            example["strong"] = np.bool_(False)
        if self._with_length:
            example["length"] = np.int32(0)
        return example

    def random_map(self, record_index: int, rng: np.random.Generator | None):
        spec = self._spec
        record = self._source[int(record_index)]
        waveform = np.asarray(record["waveform"], dtype=np.int16)
        # Real samples in the fixed-length clip (the rest is zero padding); chunked evaluation uses it.
        length = min(waveform.shape[0], spec.clip_samples) if spec.length_policy == PAD_OR_TRUNCATE \
            else spec.clip_samples
        if (rng is not None and self._random_crop and spec.length_policy == PAD_OR_TRUNCATE
                and waveform.shape[0] > spec.clip_samples):
            start = int(rng.integers(0, waveform.shape[0] - spec.clip_samples + 1))
            waveform = pad_or_truncate(waveform, spec.clip_samples, start)
        else:
            waveform = apply_length_policy(waveform, spec.length_policy, spec.clip_samples)
        if rng is not None and self._time_shift:
            # A circular shift keeps the whole clip: nothing is cut off or zero-filled.
            waveform = np.roll(waveform, int(rng.integers(0, spec.clip_samples)))
        example = {"waveform": np.ascontiguousarray(waveform)}
        if self._with_length:
            example["length"] = np.int32(length)
        if spec.multi_label:
            example["target"] = np.asarray(record["labels"], dtype=np.float32)
        else:
            label = int(record["label"])
            target = np.zeros((spec.num_classes,), np.float32)
            target[label] = 1.0
            example["target"] = target
            example["label"] = np.int32(label)
        if self._with_ids:
            example["id"] = record["id"].decode("utf-8") if isinstance(record["id"], bytes) \
                else str(record["id"])
        if self._strong_label_frames:
            events = record["events"]
            example["frame_target"] = events_to_frame_targets(
                events["onset"], events["offset"], events["label"],
                num_frames=self._strong_label_frames, clip_seconds=spec.clip_seconds,
                num_classes=spec.num_classes)
        if self._max_events:
            example["events"] = _padded_events(record["events"], self._max_events,
                                               example.get("id", str(record_index)))
        if self._with_strong_flag:
            example["strong"] = np.bool_(bool(record["strong"]) if self._has_strong_feature else True)
        return example

    def __call__(self, record_index: int):
        return self.random_map(record_index, None)


def _padded_events(events: Mapping[str, np.ndarray] | None, max_events: int,
                   clip_id: str) -> np.ndarray:
    """Strong labels as a fixed-size float32 (max_events, 3) array of (onset_s, offset_s, label);
    unused rows have label -1, so they batch and travel with the audio to the devices."""
    out = np.zeros((max_events, 3), np.float32)
    out[:, 2] = -1
    if events is None:
        return out
    n = len(events["label"])
    if n > max_events:
        raise ValueError(f"clip {clip_id!r} has {n} events, more than max_events={max_events}; "
                         "raise max_events (config.eval_max_events)")
    out[:n, 0] = events["onset"]
    out[:n, 1] = events["offset"]
    out[:n, 2] = events["label"]
    return out


class _ReadOrPad(grain.transforms.Map):
    """Eval position -> (example, mask=True), or a zero example with mask=False past the end."""

    def __init__(self, read: _ReadExample, records: np.ndarray):
        self._read = read
        self._records = records

    def map(self, position: int):
        if position < self._records.shape[0]:
            example = self._read(int(self._records[position]))
            example["mask"] = np.bool_(True)
        else:
            example = self._read.padding_example()
            example["mask"] = np.bool_(False)
        return example


def stack_examples(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Batches example dicts: each key -> np.stack along a new first axis (ids -> str array)."""
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = np.asarray(values, dtype=str) if key == "id" else np.stack(values)
    return batch


# --------------------------------------------------------------------------------------------
# Public pipelines
# --------------------------------------------------------------------------------------------


def _process_layout(global_batch_size: int, process_index: int | None,
                    process_count: int | None) -> tuple[int, int, int]:
    if process_index is None or process_count is None:
        import jax  # only for the defaults: tests and tools pass them explicitly
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"Invalid process_index={process_index} / process_count={process_count}")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                         f"process_count={process_count} (each process loads "
                         "global_batch_size // process_count rows)")
    return process_index, process_count, global_batch_size // process_count


def _read_options(num_threads: int, prefetch_buffer_size: int | None,
                  local_batch: int) -> grain.ReadOptions:
    # The buffer counts examples (batching comes after it): two batches ahead by default.
    if prefetch_buffer_size is None:
        prefetch_buffer_size = max(2 * local_batch, 16)
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)


def _check_options(spec: DatasetSpec, source: Any, strong_label_frames: int, time_shift: bool,
                   name: str) -> None:
    if strong_label_frames < 0:
        raise ValueError(f"strong_label_frames must be >= 0, got {strong_label_frames}")
    if strong_label_frames and not _has_feature(source, "events"):
        raise ValueError(f"strong_label_frames={strong_label_frames} needs an 'events' feature, "
                         f"which {name!r} does not have")
    if strong_label_frames and time_shift:
        raise ValueError("strong_label_frames cannot be combined with time_shift (the frame "
                         "labels would not follow the shifted audio)")


def _enable_grain_multiprocessing() -> None:
    # grain worker processes read an absl flag; outside absl.app.run flags are unparsed.
    from absl import flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_train_dataset(
    dataset: str,
    *,
    data_dir: str | os.PathLike,
    split: str = "train",
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    builder_config: str | None = None,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    length_policy: str | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch_buffer_size: int | None = None,
    num_workers: int = 0,
    num_epochs: int | None = None,
    balanced: bool | None = None,
    folds: Sequence[int] | None = None,
    time_shift: bool = False,
    random_crop: bool = False,
    strong_label_frames: int = 0,
    max_events: int = 0,
    use_label_index_cache: bool = True,
) -> grain.IterDataset:
    """The training pipeline as a grain ``IterDataset`` of per-process batches.

    ``max_events > 0`` adds each clip's strong labels (``events (max_events, 3)``: onset, offset,
    label; -1 rows unused) and ``strong`` (bool: the clip's events are its complete labels; from the
    dataset's ``strong`` feature where it has one, else True), for strong-label training.

    See ``make_train_iterator`` for the arguments; ``iter()`` of the result is the
    checkpointable iterator.
    """
    process_index, process_count, local_batch = _process_layout(
        global_batch_size, process_index, process_count)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    source, spec = open_source(dataset, data_dir=data_dir, split=split,
                               builder_config=builder_config, sample_rate=sample_rate,
                               clip_seconds=clip_seconds, length_policy=length_policy)
    name = tfds_name(dataset, builder_config)
    _check_options(spec, source, strong_label_frames, time_shift, name)
    balanced = spec.balanced_train if balanced is None else balanced

    index = None
    if balanced or folds is not None:
        index = _label_index_for_source(source, spec, split, num_threads=num_threads,
                                        use_cache=use_label_index_cache, show_progress=True)
    records = _selected_records(index, len(source), folds, require_label=False, name=name)

    if balanced:
        subset = np.zeros((len(source),), dtype=bool)
        subset[records] = True
        class_rows = [rows[subset[rows]] for rows in
                      (index.rows_of_class(c) for c in range(spec.num_classes))]
        indices = BalancedClassSampler(class_rows, epoch_length=records.size, seed=seed)
    else:
        # shuffle() reshuffles every epoch (its seed is folded with the epoch number).
        indices = grain.MapDataset.source(records).shuffle(seed=seed)
    # Repeat before sharding: one global stream, so global batch k holds the same examples,
    # in the same order, for any process_count.
    indices = _BatchBlockShard(indices.repeat(num_epochs), process_index, process_count, local_batch)

    if max_events and (time_shift or random_crop):
        raise ValueError("strong-label training (max_events) cannot be combined with time_shift or random_crop: "
                         "the events would not follow the moved audio")
    if max_events and not _has_feature(source, "events"):
        raise ValueError(f"max_events={max_events} (strong-label training) needs an 'events' feature, which "
                         f"{name!r} does not have")
    read = _ReadExample(source, spec, with_ids=_has_feature(source, "id"),
                        strong_label_frames=strong_label_frames, time_shift=time_shift,
                        random_crop=random_crop, max_events=max_events,
                        with_strong_flag=bool(max_events), has_strong_feature=_has_feature(source, "strong"))
    if time_shift or random_crop:
        examples = indices.random_map(read.random_map, seed=seed)
    else:
        examples = indices.map(read)
    stream = examples.to_iter_dataset(_read_options(num_threads, prefetch_buffer_size, local_batch))
    stream = stream.batch(local_batch, drop_remainder=True, batch_fn=stack_examples)
    if num_workers > 0:
        _enable_grain_multiprocessing()
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return stream


def count_records(dataset: str, *, data_dir: str | os.PathLike, split: str,
                  builder_config: str | None = None, sample_rate: int | None = None,
                  clip_seconds: float | None = None, length_policy: str | None = None,
                  folds: Sequence[int] | None = None, require_label: bool = False,
                  num_threads: int = DEFAULT_NUM_THREADS) -> int:
    """Records a pipeline over this split would use (after the fold / labelled filters);
    trainers size an "epoch" with it."""
    source, spec = open_source(dataset, data_dir=data_dir, split=split,
                               builder_config=builder_config, sample_rate=sample_rate,
                               clip_seconds=clip_seconds, length_policy=length_policy)
    if folds is None and not require_label:
        return len(source)
    index = _label_index_for_source(source, spec, split, num_threads=num_threads,
                                    use_cache=True, show_progress=True)
    return int(_selected_records(index, len(source), folds, require_label,
                                 tfds_name(dataset, builder_config)).size)


def make_train_iterator(
    dataset: str,
    *,
    data_dir: str | os.PathLike,
    split: str = "train",
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    builder_config: str | None = None,
    sample_rate: int | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch_buffer_size: int | None = None,
    num_workers: int = 0,
    num_epochs: int | None = None,
    balanced: bool | None = None,
    folds: Sequence[int] | None = None,
    time_shift: bool = False,
    random_crop: bool = False,
    strong_label_frames: int = 0,
    use_label_index_cache: bool = True,
) -> grain.DatasetIterator:
    """Checkpointable iterator over this process's training batches.

    Args:
        dataset: registered name: audioset, esc50, speech_commands, desed,
            synthetic_events (or "name/config").
        data_dir: TFDS data_dir holding the prepared dataset.
        split: TFDS split ("train", "train[:90%]", ...).
        global_batch_size: rows per step over all processes; must be divisible by
            process_count. Each batch here has ``global_batch_size // process_count`` rows.
        seed: shuffling / sampling / augmentation seed in [0, 2**32), the same on
            every process.
        process_index, process_count: this process and the number of processes;
            default ``jax.process_index()`` / ``jax.process_count()``.
        builder_config: builder config name ("tiny", ...); None = default config.
        sample_rate: expected stored rate (default: the recipe's rate). A dataset
            stored at another rate raises; the clip length scales with the rate.
        num_threads: reader threads (grain ReadOptions.num_threads).
        prefetch_buffer_size: examples read ahead (default two local batches).
        num_workers: grain worker processes (0 = none; threads are faster on small hosts).
        num_epochs: None repeats forever; else the stream ends after that many epochs.
        balanced: class-balanced sampler (default: on for AudioSet only).
        folds: keep only records whose ``fold`` is in this list (ESC-50: the 4
            training folds, e.g. (1, 2, 3, 4) when fold 5 is held out).
        time_shift: random circular shift of each clip (off, as in the official runs).
        random_crop: random window instead of the start when a stored clip is longer
            than the clip length (pad_or_truncate datasets only).
        strong_label_frames: if > 0, add ``frame_target`` (B, frames, C) from the
            ``events`` feature (1024 for HTS-AT's frame-wise output).
        use_label_index_cache: read/write the label index .npz (balanced / folds).

    Returns:
        A grain ``DatasetIterator`` yielding dicts of numpy arrays: ``waveform`` int16
        (B, clip_samples), ``target`` float32 (B, C), ``label`` int32 (B,) for
        single-label datasets, ``id`` str (B,), and ``frame_target`` if asked.
        It supports ``get_state()/set_state()`` and grain's orbax CheckpointSave/Restore.
    """
    return iter(make_train_dataset(
        dataset, data_dir=data_dir, split=split, global_batch_size=global_batch_size, seed=seed,
        process_index=process_index, process_count=process_count, builder_config=builder_config,
        sample_rate=sample_rate, num_threads=num_threads,
        prefetch_buffer_size=prefetch_buffer_size, num_workers=num_workers,
        num_epochs=num_epochs, balanced=balanced, folds=folds, time_shift=time_shift,
        random_crop=random_crop, strong_label_frames=strong_label_frames,
        use_label_index_cache=use_label_index_cache))


@dataclasses.dataclass(frozen=True)
class EvalData:
    """A deterministic eval pass for one process.

    Attributes:
        dataset: grain IterDataset of batches; iterate it again for another pass.
        num_examples: real examples over all processes.
        num_batches: batches this process yields (the same on every process).
        local_batch_size: rows per batch on this process.
    """

    dataset: grain.IterDataset
    num_examples: int
    num_batches: int
    local_batch_size: int

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset)

    def __len__(self) -> int:
        return self.num_batches


def make_eval_data(
    dataset: str,
    *,
    data_dir: str | os.PathLike,
    split: str,
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    builder_config: str | None = None,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    length_policy: str | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch_buffer_size: int | None = None,
    folds: Sequence[int] | None = None,
    require_label: bool | None = None,
    strong_label_frames: int = 0,
    max_events: int = 0,
    use_label_index_cache: bool = True,
) -> EvalData:
    """Deterministic, sharded, padded eval batches (see ``make_eval_iterator``)."""
    process_index, process_count, local_batch = _process_layout(
        global_batch_size, process_index, process_count)
    source, spec = open_source(dataset, data_dir=data_dir, split=split,
                               builder_config=builder_config, sample_rate=sample_rate,
                               clip_seconds=clip_seconds, length_policy=length_policy)
    name = tfds_name(dataset, builder_config)
    _check_options(spec, source, strong_label_frames, False, name)
    if max_events and not _has_feature(source, "events"):
        raise ValueError(f"max_events={max_events} needs an 'events' feature, which {name!r} "
                         "does not have")
    require_label = spec.eval_requires_label if require_label is None else require_label

    index = None
    if require_label or folds is not None:
        index = _label_index_for_source(source, spec, split, num_threads=num_threads,
                                        use_cache=use_label_index_cache, show_progress=True)
    records = _selected_records(index, len(source), folds, require_label, name)
    num_batches = -(-records.size // global_batch_size)

    read = _ReadExample(source, spec, with_ids=_has_feature(source, "id"),
                        strong_label_frames=strong_label_frames, time_shift=False,
                        random_crop=False, max_events=max_events, with_length=True)
    positions = grain.MapDataset.range(num_batches * global_batch_size)
    examples = positions[process_index::process_count].map(_ReadOrPad(read, records))
    stream = examples.to_iter_dataset(_read_options(num_threads, prefetch_buffer_size, local_batch))
    stream = stream.batch(local_batch, drop_remainder=True, batch_fn=stack_examples)
    return EvalData(stream, int(records.size), num_batches, local_batch)


def make_eval_iterator(
    dataset: str,
    *,
    data_dir: str | os.PathLike,
    split: str,
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    builder_config: str | None = None,
    sample_rate: int | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch_buffer_size: int | None = None,
    folds: Sequence[int] | None = None,
    require_label: bool | None = None,
    strong_label_frames: int = 0,
    max_events: int = 0,
    use_label_index_cache: bool = True,
) -> grain.DatasetIterator:
    """Iterator over one deterministic eval pass of this process's batches.

    Every selected example appears exactly once over all processes, in a fixed
    order, with no shuffling or augmentation. Examples are padded up to
    ``ceil(num_examples / global_batch_size)`` whole global batches, so each process
    yields the same number of batches; padding rows are zeros with ``mask`` False.

    Args:
        dataset, data_dir, split, builder_config, sample_rate, num_threads,
        prefetch_buffer_size, strong_label_frames, use_label_index_cache:
            as in ``make_train_iterator``.
        global_batch_size: rows per step over all processes (divisible by process_count).
        process_index, process_count: default ``jax.process_index()/process_count()``.
        folds: keep only these ``fold`` values (ESC-50 held-out fold, e.g. (5,)).
        require_label: drop clips without any positive label (default: AudioSet only,
            as the official eval).
        max_events: if > 0, add ``events`` float32 (B, max_events, 3) rows of
            (onset_s, offset_s, label), label -1 on unused rows (event-based scoring).

    Returns:
        Iterator of dicts: ``waveform`` int16 (B, clip_samples), ``target`` float32
        (B, C), ``label`` int32 (B,) (single-label), ``id`` str (B,) ("" on padding),
        ``mask`` bool (B,), ``frame_target`` (B, F, C) and ``events`` if asked.
        ``make_eval_data`` gives the same plus the number of batches.
    """
    return iter(make_eval_data(
        dataset, data_dir=data_dir, split=split, global_batch_size=global_batch_size,
        process_index=process_index, process_count=process_count,
        builder_config=builder_config, sample_rate=sample_rate, num_threads=num_threads,
        prefetch_buffer_size=prefetch_buffer_size, folds=folds, require_label=require_label,
        strong_label_frames=strong_label_frames, max_events=max_events,
        use_label_index_cache=use_label_index_cache))
