"""AudioTagger: official-equivalent outputs, resampling, and clear errors for bad input."""

import numpy as np
import pytest

from conftest import FIXTURES
from helpers import inputs, tiny_checkpoint
from htsat_jax import AudioInputError, AudioTagger, checkpoint
from htsat_jax.models import htsat_windows


@pytest.fixture(scope="module")
def tagger():
    config, weights = tiny_checkpoint()
    return AudioTagger(checkpoint.build_model(config, weights), batch_size=1)


def test_ten_seconds_equals_official_eval_forward(tagger):
    ref = np.load(FIXTURES / "tiny" / "reference.npz")
    out = tagger(inputs()["waveform_32k"], 32000)
    for name in ("clipwise_output", "framewise_output", "latent_output"):
        np.testing.assert_allclose(out[name], ref[name], atol=4e-5, rtol=1e-5)
    single = tagger(inputs()["waveform_32k"][1], 32000)  # 1-D input keeps a batch axis
    np.testing.assert_allclose(single["clipwise_output"], ref["clipwise_output"][1:], atol=3e-6)


def test_other_sample_rates_are_resampled(tagger):
    import librosa

    x32 = inputs()["waveform_32k"][:1]
    x48 = librosa.resample(x32, orig_sr=32000, target_sr=48000, res_type="soxr_hq")
    a, b = tagger(x32, 32000), tagger(x48, 48000)
    assert b["framewise_output"].shape == (1, 1024, 10)
    # A round trip through 48 kHz changes little; the same samples declared at 16 kHz change a lot.
    np.testing.assert_allclose(a["clipwise_output"], b["clipwise_output"], atol=2e-3)
    c = tagger(x32[:, :160000], 16000)
    assert np.abs(c["clipwise_output"] - a["clipwise_output"]).max() > 10 * np.abs(
        b["clipwise_output"] - a["clipwise_output"]).max()


@pytest.mark.parametrize("waveform,rate,message", [
    (np.zeros((2, 2, 100), np.float32), 32000, "mix multichannel audio to mono"),
    (np.zeros(32000, np.int16), 32000, "integer dtype int16"),
    (np.zeros(0, np.float32), 32000, "empty"),
    (np.array([0.0, np.nan] * 20000, np.float32), 32000, "NaN or inf"),
    (np.array([0.0, np.inf] * 20000, np.float32), 32000, "NaN or inf"),
    (np.zeros(32000, np.float32), 0, "sample_rate must be a positive integer"),
    (np.zeros(32000, np.float32), 32000.5, "sample_rate must be a positive integer"),
    (np.zeros(100, np.float32), 32000, "the model needs at least 513 samples"),
    (np.zeros(32000 * 25, np.float32), 32000, "Cut it into windows"),
    (["a", "b"], 32000, "float array"),
])
def test_bad_input_gives_a_clear_error(tagger, waveform, rate, message):
    with pytest.raises(AudioInputError, match=message):
        tagger(waveform, rate)


def test_loud_input_warns(tagger):
    with pytest.warns(UserWarning, match="scaled to \\[-1, 1\\]"):
        tagger(inputs()["waveform_32k"][0] * 1000, 32000)


def test_batching_does_not_change_results(tagger):
    config, weights = tiny_checkpoint()
    big = AudioTagger(checkpoint.build_model(config, weights), batch_size=8)
    x = inputs()["waveform_32k"]
    np.testing.assert_allclose(tagger(x, 32000)["clipwise_output"], big(x, 32000)["clipwise_output"], atol=1e-6)


def test_top_tags(tagger):
    clip = np.array([[0.1, 0.9, 0.5] + [0.0] * 7])
    assert tagger.top_tags(clip, k=2) == [[("class_1", 0.9), ("class_2", 0.5)]]


def test_analyse_of_ten_seconds_equals_the_official_forward(tagger):

    x = inputs()["waveform_32k"][1]
    ref = tagger(x, 32000)
    a = tagger.analyse(x, 32000)
    assert a.window_starts == [0] and a.tiled == 1
    np.testing.assert_allclose(a.clipwise_windows[0], ref["clipwise_output"][0], atol=2e-6)
    np.testing.assert_allclose(a.latent, ref["latent_output"][0], atol=2e-6)
    np.testing.assert_allclose(a.framewise, htsat_windows.window_frames(ref["framewise_output"][0], 1001), atol=2e-6)
    assert a.framewise.shape == (1001, 10) and a.seconds_per_frame == 0.01


def test_events_and_embeddings_of_a_long_recording(tagger):
    x = np.concatenate([inputs()["waveform_32k"][0], inputs()["waveform_32k"][1][:160000]])  # 15 s
    everything = tagger.events(x, 32000, thresholds=0.0, median_filter_s=0)
    assert sorted(e.label for e in everything) == [f"class_{i}" for i in range(10)]
    assert all(e.onset_s == 0.0 and e.offset_s == 15.0 for e in everything)
    assert tagger.events(x, 32000, thresholds=np.full(10, 1.0)) == []
    emb = tagger.embed(x, 32000)
    assert emb["clip"].shape == (tagger.config.num_features,)
    np.testing.assert_allclose(emb["window_starts_s"], [0.0, 5.0])
    steps = tagger.config.head_time_steps
    assert emb["frames"].shape == (2 * steps, emb["frames"].shape[1]) and emb["windows"].shape[0] == 2
    np.testing.assert_allclose(emb["frame_times"][[0, steps - 1, steps]],
                               [[0, 10 / steps], [10 - 10 / steps, 10.0], [5.0, 5 + 10 / steps]], atol=0.02)
    with pytest.raises(ValueError, match="thresholds"):
        tagger.events(x, 32000, thresholds=[0.5, 0.5])
    with pytest.raises(AudioInputError, match="one recording"):
        tagger.events(np.stack([x, x]), 32000)
