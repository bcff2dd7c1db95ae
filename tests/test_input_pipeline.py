"""grain input pipelines (htsat_jax.data.pipeline) on tiny generated TFDS datasets."""

import dataclasses
import os
import sys

import grain
import numpy as np
import pytest

from htsat_jax.data import pipeline as ip
from htsat_jax.data import synthetic

# The fake builders live in a helper package next to this file (TFDS builders must be
# defined inside a package); make it importable however pytest set up sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_tfds_builders import fake_builders  # noqa: E402

SYN = "synthetic_events"
SYN_KW = dict(builder_config="tiny")  # 16 train / 8 validation / 8 test scenes


@pytest.fixture(scope="session")
def synthetic_dir(synthetic_tiny_dir):
    return synthetic_tiny_dir


@pytest.fixture(scope="session")
def fake_dir(tmp_path_factory):
    """fake_esc50 / fake_speech_commands / fake_audioset, registered with the official recipes."""
    data_dir = str(tmp_path_factory.mktemp("tfds_pipeline_fakes"))
    for builder in (fake_builders.FakeEsc50, fake_builders.FakeSpeechCommands,
                    fake_builders.FakeAudioset):
        builder(data_dir=data_dir, file_format="array_record").download_and_prepare()
    ip.register_dataset(dataclasses.replace(ip.DATASETS["esc50"], name="fake_esc50"))
    ip.register_dataset(dataclasses.replace(ip.DATASETS["speech_commands"],
                                            name="fake_speech_commands", tfds_name=None))
    # AudioSet's class count comes from the prepared dataset (8 here)
    ip.register_dataset(dataclasses.replace(ip.DATASETS["audioset"], name="fake_audioset"))
    return data_dir


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------------------------------
# recipes and length policies
# ------------------------------------------------------------------------------------------


def test_registry_matches_official_recipes():
    esc, scv = ip.get_dataset_spec("esc50"), ip.get_dataset_spec("speech_commands")
    audioset, desed = ip.get_dataset_spec("audioset"), ip.get_dataset_spec("desed")
    synthetic_spec = ip.get_dataset_spec("synthetic_events/tiny")
    assert (esc.sample_rate, esc.clip_samples, esc.num_classes, esc.multi_label,
            esc.length_policy) == (32000, 320000, 50, False, ip.SELF_CONCAT)
    assert (scv.sample_rate, scv.clip_samples, scv.num_classes, scv.multi_label,
            scv.length_policy) == (16000, 160000, 35, False, ip.REPEAT_TO_LENGTH)
    assert (audioset.clip_samples, audioset.num_classes, audioset.length_policy) == (
        320000, None, ip.PAD_OR_TRUNCATE)  # None: the prepared dataset's class count
    assert audioset.balanced_train and audioset.eval_requires_label
    assert not esc.balanced_train and not desed.balanced_train
    assert desed.has_events and synthetic_spec.has_events and synthetic_spec.num_classes == 10
    assert scv.at_sample_rate(32000).clip_samples == 320000
    with pytest.raises(ValueError, match="Unknown dataset"):
        ip.get_dataset_spec("nope")
    # the pipeline's short names map to the builders' TFDS names
    assert ip.tfds_name("speech_commands", None) == "speech_commands_v2"
    assert ip.tfds_name("speech_commands", "cfg") == "speech_commands_v2/cfg"
    assert ip.tfds_name("synthetic_events/tiny", None) == "synthetic_events/tiny"
    with pytest.raises(ValueError, match="not both"):
        ip.tfds_name("synthetic_events/tiny", "tiny")


def test_length_policies_exact():
    five_s = np.arange(160000, dtype=np.int16)
    out = ip.apply_length_policy(five_s, ip.SELF_CONCAT, 320000)
    np.testing.assert_array_equal(out, np.concatenate([five_s, five_s]))

    one_s = (np.arange(16000) % 1000).astype(np.int16) + 1
    out = ip.apply_length_policy(one_s, ip.REPEAT_TO_LENGTH, 160000)
    np.testing.assert_array_equal(out, np.tile(one_s, 10))
    odd = np.arange(1, 12346, dtype=np.int16)  # 12345 -> doubled 4x = 197520 -> cut
    out = ip.apply_length_policy(odd, ip.REPEAT_TO_LENGTH, 160000)
    assert out.shape == (160000,)
    np.testing.assert_array_equal(out, np.resize(odd, 160000))
    np.testing.assert_array_equal(ip.repeat_to_length(np.zeros(0, np.int16), 10), np.zeros(10))

    short = np.arange(1, 101, dtype=np.int16)
    out = ip.apply_length_policy(short, ip.PAD_OR_TRUNCATE, 320000)
    np.testing.assert_array_equal(out[:100], short)
    assert out.shape == (320000,) and not out[100:].any()
    long = np.arange(320050, dtype=np.int64).astype(np.int16)
    np.testing.assert_array_equal(ip.apply_length_policy(long, ip.PAD_OR_TRUNCATE, 320000),
                                  long[:320000])


def test_length_policies_through_pipeline(fake_dir):
    # ESC-50: every 5 s clip becomes itself twice
    batch = next(ip.make_train_iterator("fake_esc50", data_dir=fake_dir, global_batch_size=4,
                                        seed=0, process_index=0, process_count=1))
    assert batch["waveform"].shape == (4, 320000) and batch["waveform"].dtype == np.int16
    for row, example_id in enumerate(batch["id"]):
        record = int(example_id[4:])
        clip = fake_builders.fake_waveform(record, 160000)
        np.testing.assert_array_equal(batch["waveform"][row], np.concatenate([clip, clip]))
        assert batch["label"][row] == (7 * record) % 50
        np.testing.assert_array_equal(batch["target"][row], np.eye(50, dtype=np.float32)[
            (7 * record) % 50])
    assert batch["label"].dtype == np.int32 and batch["target"].dtype == np.float32

    # Speech Commands: doubled until >= 160000 samples then cut (16 kHz)
    eval_data = ip.make_eval_data("fake_speech_commands", data_dir=fake_dir, split="train",
                                  global_batch_size=6, process_index=0, process_count=1)
    (batch,) = list(eval_data)
    assert batch["waveform"].shape == (6, 160000)
    for row, example_id in enumerate(batch["id"]):
        record = int(example_id[3:])
        clip = fake_builders.fake_waveform(record, fake_builders.FakeSpeechCommands.LENGTHS[record])
        expected = np.resize(clip, 160000) if clip.size else np.zeros(160000, np.int16)
        np.testing.assert_array_equal(batch["waveform"][row], expected)


# ------------------------------------------------------------------------------------------
# sharding, batching, resume
# ------------------------------------------------------------------------------------------


def test_train_shards_are_disjoint_and_cover_an_epoch(synthetic_dir):
    # 16 train scenes, 8 simulated processes, global batch 8 -> one row per process per
    # step; two steps are one epoch.
    per_process = []
    for process_index in range(8):
        it = ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=8,
                                    seed=11, process_index=process_index, process_count=8,
                                    num_threads=0)
        batches = _take(it, 2)
        assert all(b["waveform"].shape == (1, 320000) for b in batches)
        per_process.append([i for b in batches for i in b["id"]])
    all_ids = [i for ids in per_process for i in ids]
    assert len(set(all_ids)) == 16 == len(all_ids)  # disjoint and complete
    assert set(all_ids) == {f"train/{i:06d}" for i in range(16)}

    # The global batch is the same set of examples whatever the process count.
    single = _take(ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir,
                                          global_batch_size=8, seed=11, process_index=0,
                                          process_count=1), 2)
    for step in range(2):
        assert set(single[step]["id"]) == {ids[step] for ids in per_process}

    # another seed gives another order; the next epoch is reshuffled
    other = _take(ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir,
                                         global_batch_size=8, seed=12, process_index=0,
                                         process_count=1), 4)
    assert [list(b["id"]) for b in other[:2]] != [list(b["id"]) for b in single]
    assert [i for b in other[2:] for i in b["id"]] != [i for b in other[:2] for i in b["id"]]


def test_train_batch_contents(synthetic_dir):
    import tensorflow_datasets as tfds

    it = ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=4,
                                seed=0, process_index=0, process_count=1)
    batch = next(it)
    assert set(batch) == {"waveform", "target", "id"}
    assert batch["waveform"].dtype == np.int16 and batch["waveform"].shape == (4, 320000)
    assert batch["target"].dtype == np.float32 and batch["target"].shape == (4, 10)
    source = tfds.data_source("synthetic_events/tiny", data_dir=synthetic_dir, split="train",
                              download=False)
    by_id = {source[i]["id"].decode(): source[i] for i in range(len(source))}
    for row, example_id in enumerate(batch["id"]):
        np.testing.assert_array_equal(batch["waveform"][row], by_id[example_id]["waveform"])
        np.testing.assert_array_equal(batch["target"][row], by_id[example_id]["labels"])


def test_global_batch_must_divide(synthetic_dir):
    with pytest.raises(ValueError, match="multiple of process_count=8"):
        ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=12,
                               seed=0, process_index=0, process_count=8)


def test_process_defaults_come_from_jax(synthetic_dir):
    import jax

    it = ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=2,
                                seed=0)
    assert next(it)["waveform"].shape[0] == 2 // jax.process_count()


@pytest.mark.parametrize("time_shift", [False, True])
def test_state_restore_reproduces_next_batches(synthetic_dir, time_shift):
    kwargs = dict(**SYN_KW, data_dir=synthetic_dir, global_batch_size=4, seed=5,
                  process_index=1, process_count=2, time_shift=time_shift)
    it = ip.make_train_iterator(SYN, **kwargs)
    _take(it, 5)  # crosses an epoch boundary (8 rows per epoch on this process)
    state = it.get_state()
    expected = _take(it, 4)
    resumed = ip.make_train_iterator(SYN, **kwargs)
    resumed.set_state(state)
    for a, b in zip(expected, _take(resumed, 4)):
        _assert_batches_equal(a, b)
    if time_shift:  # the augmentation really moved the audio
        plain = ip.make_train_iterator(SYN, **{**kwargs, "time_shift": False})
        plain.set_state(state)
        assert not np.array_equal(next(plain)["waveform"], expected[0]["waveform"])


def test_orbax_checkpoint_round_trip(synthetic_dir, tmp_path):
    import orbax.checkpoint as ocp

    kwargs = dict(**SYN_KW, data_dir=synthetic_dir, global_batch_size=4, seed=9,
                  process_index=0, process_count=1)
    it = ip.make_train_iterator(SYN, **kwargs)
    _take(it, 3)
    manager = ocp.CheckpointManager(tmp_path / "ckpt",
                                    options=ocp.CheckpointManagerOptions(max_to_keep=2))
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    manager.close()
    expected = _take(it, 3)

    resumed = ip.make_train_iterator(SYN, **kwargs)
    restorer = ocp.CheckpointManager(tmp_path / "ckpt")
    assert restorer.latest_step() == 3
    restorer.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    restorer.close()
    for a, b in zip(expected, _take(resumed, 3)):
        _assert_batches_equal(a, b)


# ------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("process_count,global_batch", [(1, 3), (2, 6), (4, 4)])
def test_eval_covers_every_example_once_with_mask(synthetic_dir, process_count, global_batch):
    num_examples = 8  # tiny test split
    expected_batches = -(-num_examples // global_batch)
    seen, padding_rows = [], 0
    for process_index in range(process_count):
        data = ip.make_eval_data(SYN, **SYN_KW, data_dir=synthetic_dir, split="test",
                                 global_batch_size=global_batch, process_index=process_index,
                                 process_count=process_count)
        assert data.num_examples == num_examples and data.num_batches == expected_batches
        batches = list(data)
        assert len(batches) == expected_batches
        for batch in batches:
            local = global_batch // process_count
            assert batch["waveform"].shape == (local, 320000) and batch["mask"].shape == (local,)
            assert batch["mask"].dtype == np.bool_
            seen += list(batch["id"][batch["mask"]])
            pad = ~batch["mask"]
            padding_rows += int(pad.sum())
            assert not batch["waveform"][pad].any() and not batch["target"][pad].any()
            assert all(i == "" for i in batch["id"][pad])
        # deterministic: a second pass is identical
        for a, b in zip(batches, list(data)):
            _assert_batches_equal(a, b)
    assert sorted(seen) == [f"test/{i:06d}" for i in range(num_examples)]
    assert padding_rows == expected_batches * global_batch - num_examples


def test_eval_iterator_function(synthetic_dir):
    batches = list(ip.make_eval_iterator(SYN, **SYN_KW, data_dir=synthetic_dir,
                                         split="validation", global_batch_size=8,
                                         process_index=0, process_count=1))
    assert len(batches) == 1 and batches[0]["mask"].all()


def test_esc50_fold_filter(fake_dir):
    folds = {i: i % 5 + 1 for i in range(fake_builders.FakeEsc50.NUM_RECORDS)}
    it = ip.make_train_iterator("fake_esc50", data_dir=fake_dir, global_batch_size=4, seed=3,
                                process_index=0, process_count=1, folds=(1, 2, 3, 4))
    train_ids = [i for b in _take(it, 4) for i in b["id"]]  # 16 rows over 2 epochs of 8
    assert {folds[int(i[4:])] for i in train_ids} == {1, 2, 3, 4}
    assert len(set(train_ids)) == 8
    data = ip.make_eval_data("fake_esc50", data_dir=fake_dir, split="train", global_batch_size=4,
                             process_index=0, process_count=1, folds=(5,))
    held_out = [i for b in data for i in b["id"][b["mask"]]]
    assert sorted(held_out) == ["clip04", "clip09"]
    with pytest.raises(ValueError, match="fold"):
        ip.make_eval_data("fake_esc50", data_dir=fake_dir, split="train", global_batch_size=4,
                          process_index=0, process_count=1, folds=(6,))
    with pytest.raises(ValueError, match="no 'fold' feature"):
        ip.make_eval_data("fake_audioset", data_dir=fake_dir, split="train",
                          global_batch_size=4, process_index=0, process_count=1, folds=(1,))


# ------------------------------------------------------------------------------------------
# class-balanced sampling and the label index
# ------------------------------------------------------------------------------------------


def test_balanced_sampler_rounds_and_epochs():
    class_rows = [np.arange(0, 50), np.arange(50, 55), np.array([55]), np.array([], np.int64)]
    sampler = ip.BalancedClassSampler(class_rows, epoch_length=30, seed=4)
    assert len(sampler) == 30
    epoch0 = [sampler[i] for i in range(30)]
    # each round of 3 non-empty classes draws one record from every class
    owner = lambda r: 0 if r < 50 else (1 if r < 55 else 2)
    for start in range(0, 30, 3):
        assert sorted(owner(r) for r in epoch0[start:start + 3]) == [0, 1, 2]
    epoch1 = [sampler[30 + i] for i in range(30)]
    assert epoch0 != epoch1  # regenerated every epoch
    again = ip.BalancedClassSampler(class_rows, epoch_length=30, seed=4)
    assert [again[30 + i] for i in range(30)] == epoch1  # a pure function of (seed, index)
    np.testing.assert_array_equal(sampler.epoch_queue(0), epoch0)
    with pytest.raises(ValueError, match="empty"):
        ip.BalancedClassSampler([np.array([], np.int64)], epoch_length=3, seed=0)


def test_balanced_train_pipeline_flattens_class_frequencies(fake_dir):
    raw = np.stack([fake_builders.FakeAudioset.labels_of(i) for i in range(800)]).sum(0)
    assert raw.max() / raw.min() > 50  # the fake data set is very imbalanced
    it = ip.make_train_iterator("fake_audioset", data_dir=fake_dir, global_batch_size=16, seed=2,
                                process_index=0, process_count=1, num_epochs=1)
    counts, rows = np.zeros(8), 0
    for batch in it:
        counts += batch["target"].sum(0)
        rows += batch["waveform"].shape[0]
        assert batch["waveform"].shape[1] == 320000
    assert rows == 800  # one epoch = number of records
    # every class is drawn 100 times per epoch; class 0 also rides along with others
    assert np.all((counts[1:] > 70) & (counts[1:] < 130))
    assert counts.max() / counts.min() < 3


def test_label_index_is_cached_and_refreshed(fake_dir):
    index = ip.load_label_index("fake_audioset", data_dir=fake_dir, split="train",
                                show_progress=False)
    labels = np.stack([fake_builders.FakeAudioset.labels_of(i) for i in range(800)])
    assert index.num_records == 800
    # the stored order is shuffled, so compare class counts and row sets via ids
    np.testing.assert_array_equal(index.class_counts(), labels.sum(0))
    assert index.labelled_mask().sum() == (labels.sum(1) > 0).sum()

    dataset_dir = os.path.join(fake_dir, "fake_audioset", "1.0.0")
    cache = ip.label_index_path(dataset_dir, "train")
    assert os.path.exists(cache)
    mtime = os.stat(cache).st_mtime_ns
    again = ip.load_label_index("fake_audioset", data_dir=fake_dir, split="train",
                                show_progress=False)
    assert os.stat(cache).st_mtime_ns == mtime  # reused, not rewritten
    np.testing.assert_array_equal(again.class_rows, index.class_rows)

    # a changed dataset file invalidates the cache
    shard = [f for f in os.listdir(dataset_dir) if ".array_record-" in f][0]
    os.utime(os.path.join(dataset_dir, shard))
    rebuilt = ip.load_label_index("fake_audioset", data_dir=fake_dir, split="train",
                                  show_progress=False)
    assert os.stat(cache).st_mtime_ns != mtime
    np.testing.assert_array_equal(rebuilt.class_rows, index.class_rows)


def test_audioset_eval_keeps_only_labelled_clips(fake_dir):
    data = ip.make_eval_data("fake_audioset", data_dir=fake_dir, split="train",
                             global_batch_size=64, process_index=0, process_count=1)
    labelled = sum(fake_builders.FakeAudioset.labels_of(i).any() for i in range(800))
    assert data.num_examples == labelled == 800 - 16
    total = 0
    for batch in data:
        assert batch["target"][batch["mask"]].sum(1).min() >= 1
        total += batch["mask"].sum()
    assert total == labelled


# ------------------------------------------------------------------------------------------
# checks and options
# ------------------------------------------------------------------------------------------


def test_sample_rate_mismatch_raises(synthetic_dir):
    with pytest.raises(ValueError, match="Sample-rate mismatch.*32000 Hz.*16000 Hz"):
        ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=2,
                               seed=0, process_index=0, process_count=1, sample_rate=16000)
    with pytest.raises(ValueError, match="Sample-rate mismatch"):
        ip.make_eval_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, split="test",
                              global_batch_size=2, process_index=0, process_count=1,
                              sample_rate=48000)


def test_class_count_is_checked_or_filled_in(fake_dir):
    _, spec = ip.open_source("fake_audioset", data_dir=fake_dir, split="train")
    assert spec.num_classes == fake_builders.FakeAudioset.NUM_CLASSES
    ip.register_dataset(dataclasses.replace(ip.DATASETS["esc50"], name="fake_esc50_wrong",
                                            tfds_name="fake_esc50", num_classes=10))
    with pytest.raises(ValueError, match="has 50 classes but .* expects 10"):
        ip.open_source("fake_esc50_wrong", data_dir=fake_dir, split="train")


def test_features_come_from_the_prepared_files(fake_dir, tmp_path):
    # The registered FakeAudioset class defaults to 8 classes; a copy prepared with 3
    # (as AudioSet from a custom class list) must be read with its own 3-class features.
    fake_builders.FakeAudioset(num_classes=3, num_records=20, data_dir=str(tmp_path),
                               file_format="array_record").download_and_prepare()
    data = ip.make_eval_data("fake_audioset", data_dir=str(tmp_path), split="train",
                             global_batch_size=4, process_index=0, process_count=1,
                             require_label=False)
    batches = list(data)
    assert data.num_examples == 20 and batches[0]["target"].shape == (4, 3)
    by_id = {i: t for b in batches for i, t in zip(b["id"], b["target"])}
    np.testing.assert_array_equal(by_id["yt007"], fake_builders.FakeAudioset.labels_of(7, 3))


def test_missing_dataset_is_a_clear_error(tmp_path, synthetic_dir):
    with pytest.raises(FileNotFoundError, match="No prepared dataset 'synthetic_events/tiny'"):
        ip.make_train_iterator(SYN, **SYN_KW, data_dir=str(tmp_path), global_batch_size=2,
                               seed=0, process_index=0, process_count=1)
    with pytest.raises(FileNotFoundError, match="'speech_commands_v2'"):
        ip.make_train_iterator("speech_commands", data_dir=str(tmp_path), global_batch_size=2,
                               seed=0, process_index=0, process_count=1)
    with pytest.raises(FileNotFoundError, match=r"no prepared config 'huge'.*\['tiny'\]"):
        ip.make_eval_iterator(SYN, builder_config="huge", data_dir=synthetic_dir, split="test",
                              global_batch_size=2, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="Unknown split 'bogus'"):
        ip.make_eval_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, split="bogus",
                              global_batch_size=2, process_index=0, process_count=1)


def test_strong_label_frames_follow_events(synthetic_dir):
    import tensorflow_datasets as tfds

    source = tfds.data_source("synthetic_events/tiny", data_dir=synthetic_dir, split="test",
                              download=False)
    events = {source[i]["id"].decode(): source[i]["events"] for i in range(len(source))}
    data = ip.make_eval_data(SYN, **SYN_KW, data_dir=synthetic_dir, split="test",
                             global_batch_size=8, process_index=0, process_count=1,
                             strong_label_frames=1024)
    batch = next(iter(data))
    assert batch["frame_target"].shape == (8, 1024, 10)
    frame_s = 10.0 / 1024
    for row, example_id in enumerate(batch["id"]):
        frames = batch["frame_target"][row]
        np.testing.assert_array_equal(frames.max(0), batch["target"][row])
        ev = events[example_id]
        for onset, offset, label in zip(ev["onset"], ev["offset"], ev["label"]):
            inside = int((onset + offset) / 2 / frame_s)
            assert frames[inside, label] == 1
        for label in range(10):  # a frame is active only while an event of its class is
            active = np.flatnonzero(frames[:, label])
            centres = (active + 0.5) * frame_s
            on = [(o - frame_s, f + frame_s) for o, f, c in
                  zip(ev["onset"], ev["offset"], ev["label"]) if c == label]
            assert all(any(a <= t <= b for a, b in on) for t in centres)
    with pytest.raises(ValueError, match="time_shift"):
        ip.make_train_iterator(SYN, **SYN_KW, data_dir=synthetic_dir, global_batch_size=2,
                               seed=0, process_index=0, process_count=1,
                               strong_label_frames=1024, time_shift=True)


def test_strong_label_frames_need_events(fake_dir):
    with pytest.raises(ValueError, match="'events' feature"):
        ip.make_train_iterator("fake_speech_commands", data_dir=fake_dir, global_batch_size=2,
                               seed=0, process_index=0, process_count=1, strong_label_frames=8)


def test_random_crop_picks_windows_of_long_clips(fake_dir):
    # record 3 of fake_audioset is 320050 samples long; with random_crop its window moves
    clip = fake_builders.fake_waveform(3, 320050)
    starts = set()
    for seed in range(4):
        it = ip.make_train_iterator("fake_audioset", data_dir=fake_dir, global_batch_size=16,
                                    seed=seed, process_index=0, process_count=1,
                                    balanced=False, random_crop=True, num_epochs=1)
        for batch in it:
            for row, example_id in enumerate(batch["id"]):
                if example_id == "yt003":
                    head = batch["waveform"][row][:8]
                    start = next(s for s in range(51) if np.array_equal(clip[s:s + 8], head))
                    np.testing.assert_array_equal(batch["waveform"][row],
                                                  clip[start:start + 320000])
                    starts.add(start)
    assert len(starts) > 1
