"""Synthetic sound-event scenes (htsat_jax.data.synthetic) and their TFDS builder."""


import numpy as np
import pytest

from htsat_jax.data import synthetic

SR = synthetic.DEFAULT_SAMPLE_RATE


# ------------------------------------------------------------------------------------------
# helpers: a small numpy log-mel (64 bins, n_fft 1024, hop 320) independent of the library
# ------------------------------------------------------------------------------------------


def _mel_filterbank(sample_rate=SR, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0):
    to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


_MEL = _mel_filterbank()


def _log_mel(x):
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::320] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log10(power @ _MEL.T + 1e-10)  # (frames, 64)


def _power_spectrum(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))) ** 2
    return np.fft.rfftfreq(x.shape[0], 1.0 / SR), spectrum


def _centroid(x):
    freqs, power = _power_spectrum(x)
    return float((freqs * power).sum() / power.sum())


def _peak_hz(x):
    freqs, power = _power_spectrum(x)
    return float(freqs[np.argmax(power)])


def _rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def _render(name, seed, seconds=1.0):
    return synthetic.render_event(synthetic.CLASS_NAMES.index(name), seed, int(seconds * SR))


# ------------------------------------------------------------------------------------------
# scenes
# ------------------------------------------------------------------------------------------


def test_scene_shapes_and_event_layout():
    for seed in range(20):
        waveform, events = synthetic.make_scene(seed)
        assert waveform.dtype == np.float32 and waveform.shape == (10 * SR,)
        assert np.abs(waveform).max() <= 1.0
        assert 1 <= len(events) <= 4
        assert events == sorted(events)
        for onset, offset, class_index in events:
            assert 0.0 <= onset < offset <= 10.0
            assert synthetic.MIN_EVENT_S - 1e-9 <= offset - onset <= synthetic.MAX_EVENT_S + 1e-9
            assert 0 <= class_index < synthetic.NUM_CLASSES
            # times are exact sample positions
            assert onset * SR == pytest.approx(round(onset * SR), abs=1e-6)
            assert offset * SR == pytest.approx(round(offset * SR), abs=1e-6)


def test_scene_is_deterministic_and_seed_dependent():
    a, events_a = synthetic.make_scene(7)
    b, events_b = synthetic.make_scene(np.random.default_rng(7))
    c, _ = synthetic.make_scene(8)
    np.testing.assert_array_equal(a, b)
    assert events_a == events_b
    assert not np.array_equal(a, c)


def test_make_scenes_matches_per_scene_streams():
    waveforms, events = synthetic.make_scenes(3, seed=5, stream=1)
    assert waveforms.shape == (3, 10 * SR) and len(events) == 3
    for i in range(3):
        expected, expected_events = synthetic.make_scene(synthetic.scene_rng(5, i, stream=1))
        np.testing.assert_array_equal(waveforms[i], expected)
        assert events[i] == expected_events
    # scene i does not depend on how many scenes are made, streams are independent
    fewer, _ = synthetic.make_scenes(2, seed=5, stream=1)
    np.testing.assert_array_equal(fewer, waveforms[:2])
    other_stream, _ = synthetic.make_scenes(1, seed=5, stream=0)
    assert not np.array_equal(other_stream[0], waveforms[0])


def test_other_rates_and_durations():
    waveform, events = synthetic.make_scene(1, sample_rate=16000, duration_s=2.0)
    assert waveform.shape == (32000,)
    assert all(offset <= 2.0 for _, offset, _ in events)


def test_event_times_match_energy_envelope():
    floor = synthetic.NOISE_FLOOR_RMS
    fade = int(synthetic.FADE_S * SR)
    checked_gaps = 0
    for seed in range(25):
        waveform, events = synthetic.make_scene(seed)
        covered = np.zeros(waveform.shape[0], bool)
        for onset, offset, _ in events:
            start, stop = round(onset * SR), round(offset * SR)
            covered[start:stop] = True
            # loud inside every event (fades excluded)
            assert _rms(waveform[start + fade:stop - fade]) > 3 * floor
        # everything outside the events is the noise floor only
        assert _rms(waveform[~covered]) == pytest.approx(floor, rel=0.1)
        # just before an isolated onset: quiet; just after the fade: loud
        for onset, _, _ in events:
            start = round(onset * SR)
            before = slice(start - 2 * fade, start)
            if start >= 2 * fade and not covered[before].any():
                assert _rms(waveform[before]) < 2 * floor
                checked_gaps += 1
    assert checked_gaps > 10


def test_class_signatures():
    for seed in range(5):
        assert 300 <= _peak_hz(_render("pure_tone", seed)) <= 900
        assert 1000 <= _peak_hz(_render("am_tone", seed)) <= 2000
        assert 2200 <= _peak_hz(_render("fm_warble", seed)) <= 5000
        assert _centroid(_render("low_rumble", seed)) < 250
        assert _centroid(_render("noise_burst", seed)) > 6000
        assert _centroid(_render("click_train", seed)) > 3000
        # chirps: the dominant frequency moves up / down over the event
        for name, direction in (("rising_chirp", 1), ("falling_chirp", -1)):
            x = _render(name, seed, 2.0)
            first, last = _peak_hz(x[:SR // 4]), _peak_hz(x[-SR // 4:])
            assert direction * (last - first) > 1500
        # DTMF: one peak in the low group and one in the high group
        freqs, power = _power_spectrum(_render("dual_tone", seed))
        low, high = (freqs > 650) & (freqs < 1000), (freqs > 1150) & (freqs < 1700)
        assert power[low].max() > 100 * np.median(power) and power[high].max() > 100 * np.median(power)
        # harmonic stack: strong peaks at f0 multiples below 4 kHz, nothing much above
        x = _render("harmonic_stack", seed)
        freqs, power = _power_spectrum(x)
        assert power[freqs > 4500].sum() < 1e-3 * power.sum()
        assert 100 <= _peak_hz(x) <= 250
        # AM tone: deep tremolo (frame energy swings), pure tone: steady
        am_frames = _log_mel(_render("am_tone", seed)).max(axis=1)
        tone_frames = _log_mel(_render("pure_tone", seed)).max(axis=1)
        assert np.ptp(am_frames[5:-5]) > 1.0 and np.ptp(tone_frames[5:-5]) < 0.2


def test_classes_separable_in_log_mel():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    features, labels = [], []
    for class_index in range(synthetic.NUM_CLASSES):
        for _ in range(18):
            n = int(rng.uniform(0.4, 1.5) * SR)
            x = synthetic.render_event(class_index, rng, n)
            x = x + rng.standard_normal(n).astype(np.float32) * synthetic.NOISE_FLOOR_RMS
            mel = _log_mel(x)
            third = mel.shape[0] // 3
            features.append(np.concatenate([mel.mean(0), mel.std(0),
                                            mel[-third:].mean(0) - mel[:third].mean(0)]))
            labels.append(class_index)
    features, labels = np.asarray(features), np.asarray(labels)
    train = np.arange(labels.size) % 3 != 0
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    model.fit(features[train], labels[train])
    assert model.score(features[~train], labels[~train]) >= 0.95


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="class_index"):
        synthetic.render_event(10, 0, 100)
    with pytest.raises(ValueError, match="num_samples"):
        synthetic.render_event(0, 0, 0)
    with pytest.raises(ValueError, match="too short"):
        synthetic.make_scene(0, duration_s=0.01)


# ------------------------------------------------------------------------------------------
# TFDS builder
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_synthetic_dir(tmp_path_factory):
    from tfds_builders.synthetic_events import SyntheticEvents

    data_dir = tmp_path_factory.mktemp("tfds_synthetic")
    SyntheticEvents(config="tiny", data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def test_builder_module_constants():
    import tfds_builders.synthetic_events as pkg

    assert pkg.SAMPLE_RATE == 32000
    assert pkg.CLASS_NAMES == list(synthetic.CLASS_NAMES)
    assert [c.name for c in pkg.SyntheticEvents.BUILDER_CONFIGS][:1] == ["default"]


def test_builder_splits_and_examples(tiny_synthetic_dir):
    import tensorflow_datasets as tfds

    expected_sizes = {"train": 16, "validation": 8, "test": 8}
    streams = {"train": 0, "validation": 1, "test": 2}
    for split, size in expected_sizes.items():
        source = tfds.data_source("synthetic_events/tiny", data_dir=tiny_synthetic_dir,
                                  split=split, download=False)
        assert len(source) == size
        metadata = source.dataset_info.metadata
        assert metadata["sample_rate"] == 32000
        assert list(metadata["class_names"]) == list(synthetic.CLASS_NAMES)
        ids = set()
        for i in range(size):
            example = source[i]
            example_id = example["id"].decode()
            ids.add(example_id)
            index = int(example_id.split("/")[1])
            waveform, events = synthetic.make_scene(synthetic.scene_rng(0, index, streams[split]))
            assert example_id.startswith(split + "/")
            assert example["waveform"].dtype == np.int16
            np.testing.assert_array_equal(
                example["waveform"], np.round(np.clip(waveform, -1, 1) * 32767).astype(np.int16))
            ev = example["events"]
            np.testing.assert_allclose(ev["onset"], [e[0] for e in events], rtol=1e-6)
            np.testing.assert_allclose(ev["offset"], [e[1] for e in events], rtol=1e-6)
            np.testing.assert_array_equal(ev["label"], [e[2] for e in events])
            # clip labels are exactly the classes that have events
            multi_hot = np.zeros(synthetic.NUM_CLASSES, np.uint8)
            multi_hot[ev["label"]] = 1
            np.testing.assert_array_equal(example["labels"], multi_hot)
        assert len(ids) == size


def test_builder_rejects_empty_split(tmp_path):
    from tfds_builders.synthetic_events import SyntheticEvents, SyntheticEventsConfig

    config = SyntheticEventsConfig(name="empty", num_train=0, num_validation=1, num_test=1)
    with pytest.raises(ValueError, match="num_train"):
        SyntheticEvents(config=config, data_dir=str(tmp_path)).download_and_prepare()
