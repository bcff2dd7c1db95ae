"""YAMNet: parity with Google's official code (../shared/fixtures/official_yamnet), the .h5 and .tflite
converters, the real 8-bit weights on real clips, and YAMNet through the tagger, predict and convert CLIs.

Tolerances are the fixture's (tolerances.json: 10x the official float32-vs-float64 difference);
each check prints the measured maximum error next to its tolerance (pytest -s shows them).
Tiers: the real-clip checks (ESC-10 parity, Dog on every dog clip) are acceptance tests, the convert
CLI round trip an integration test, the rest unit tests.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import re
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import SHARED, require
from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import models
from htsat_jax.convert import yamnet as convert
from htsat_jax.convert.common import CheckpointError
from htsat_jax.models import yamnet
from htsat_jax.models import yamnet_frontend as fe

FIX = SHARED / "fixtures" / "official_yamnet"
TFLITE = SHARED / "weights" / "yamnet" / "yamnet.tflite"
ESC10 = SHARED / "data" / "esc10_subset"
INPUTS = ("noise_1s", "tones_975ms", "chirp_3p3s", "burst_0p2s", "speech_one", "noise_975ms", "speech_975ms")


@functools.lru_cache(maxsize=None)
def npz(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(require(FIX / name)))


@functools.lru_cache(maxsize=None)
def atol() -> dict[str, float]:
    tol = json.loads(require(FIX / "tolerances.json").read_text())["tolerances"]
    return {k: v["suggested_atol"] for k, v in tol.items()}


def check(what: str, got, want, tol: float) -> float:
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    print(f"{what}: max |diff| {err:.3g} (tolerance {tol:g})")
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol:g}"
    return err


@functools.lru_cache(maxsize=None)
def converted(source: str):
    path = str(require(FIX / "yamnet_random.h5" if source == "h5" else TFLITE))
    return convert.load_yamnet(path)


@functools.lru_cache(maxsize=None)
def programs():
    """Jitted forwards shared by every model of the base config (weights are an argument)."""
    graphdef = nnx.split(models.abstract(yamnet.Config()))[0]

    @jax.jit
    def waveform_fwd(state, x, num_samples):
        cap = {}
        out = nnx.merge(graphdef, state)(x, num_samples=num_samples, capture=cap)
        return {"log_mel": cap["log_mel"], "patches": cap["patches"], **out}

    @jax.jit
    def patches_fwd(state, p):
        cap = {}
        out = nnx.merge(graphdef, state).forward_patches(p, capture=cap)
        return {**{k: v for k, v in cap.items() if k in ("layer1_out", "layer3_out", "layer6_out", "layer13_out",
                                                           "layer14_out")}, **out}

    return waveform_fwd, patches_fwd


def random_weights(config: yamnet.Config, seed: int = 0) -> dict:
    """He-normal kernels, zero biases, unit BatchNorm statistics, drawn with numpy (a jax random
    draw compiles a program per shape: seconds each on a small CPU)."""
    rng = np.random.default_rng(seed)

    def init(path, x):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0.0, np.sqrt(2.0 / np.prod(x.shape[:-1])), x.shape).astype(np.float32)
        return np.ones(x.shape, np.float32) if name == "var" else np.zeros(x.shape, np.float32)

    return jax.tree_util.tree_map_with_path(init, nnx.to_pure_dict(nnx.state(models.abstract(config))))


def state_of(source: str):
    config, weights, _ = converted(source)
    return nnx.split(ckpt_lib.build_model(config, weights))[1]


@functools.lru_cache(maxsize=None)
def run_inputs(source: str) -> dict[str, dict[str, np.ndarray]]:
    """Every fixture input in one batch: zero-padded to the longest official length (54000)."""
    inputs = npz("inputs.npz")
    longest = max(fe.padded_length(len(inputs[k])) for k in INPUTS)
    batch = np.zeros((len(INPUTS), longest), np.float32)
    for i, k in enumerate(INPUTS):
        batch[i, :len(inputs[k])] = inputs[k]
    lengths = np.array([len(inputs[k]) for k in INPUTS], np.int32)
    out = jax.device_get(programs()[0](state_of(source), jnp.asarray(batch), jnp.asarray(lengths)))
    result = {}
    for i, k in enumerate(INPUTS):
        frames = fe.num_frames(fe.padded_length(len(inputs[k])))
        count = fe.official_num_patches(len(inputs[k]))
        result[k] = {"log_mel_spectrogram": out["log_mel"][i, :frames], "patches": out["patches"][i, :count],
                     **{n: out[n][i, :count] for n in ("embeddings", "logits", "framewise_output")},
                     **{n: out[n][i] for n in ("clipwise_output", "latent_output")}}
    return result


# ---------------------------------------------------------------------------------------------- frontend


def test_padding_frames_and_patches_follow_the_official_rule():
    for n, padded, patches in ((3200, 15600, 1), (8000, 15600, 1), (8276, 15600, 1), (15600, 15600, 1),
                               (16000, 23280, 2), (48000, 54000, 6), (52800, 54000, 6)):
        assert fe.padded_length(n) == padded and fe.official_num_patches(n) == patches, n
        assert int(fe.official_num_patches_traced(np.int32(n))) == patches
    for n, frames, patches in ((15600, 96, 1), (16000, 98, 1), (48000, 298, 5)):
        assert fe.num_frames(n) == frames and fe.num_patches(frames) == patches
    assert fe.padded_length(1) == 15600 and yamnet.input_limits(yamnet.Config()) == (1, None)
    for k, n in json.loads(require(FIX / "inputs.json").read_text())["official_padded_lengths"].items():
        assert fe.padded_length(len(npz("inputs.npz")[k])) == n


def test_mel_matrix_and_zeros():
    tol = atol()
    check("mel_matrix float32", fe.mel_matrix("float32"), npz("reference.npz")["mel_matrix"], tol["mel_matrix"])
    check("mel_matrix float64", fe.mel_matrix("float64"), npz("reference.npz")["mel_matrix"], tol["mel_matrix"])
    m = fe.mel_matrix("float64")
    nonzero = np.flatnonzero(m.any(axis=1))
    assert (nonzero[0], nonzero[-1]) == (5, 239) and not m[0].any()  # DC dropped
    assert np.count_nonzero(m[:, 0]) == 1 and np.count_nonzero(m[:, -1]) == 17
    assert m.sum() == pytest.approx(230.9136, abs=1e-4) and m.max() == pytest.approx(0.9962, abs=1e-4)
    lm = fe.log_mel(jnp.zeros((1, 15600)))
    assert lm.shape == (1, 96, 64) and np.all(np.asarray(lm) == np.float32(np.log(np.float32(0.001))))


def test_log_mel_and_patches_match_the_official_frontend():
    ref, tol = npz("reference.npz"), atol()
    ours = run_inputs("h5")
    for k in INPUTS:
        check(f"{k} log_mel_spectrogram", ours[k]["log_mel_spectrogram"], ref[f"{k}/log_mel_spectrogram"],
              tol["log_mel_spectrogram"])
        check(f"{k} patches", ours[k]["patches"], ref[f"{k}/patches"], tol["log_mel_spectrogram"])


# ---------------------------------------------------------------------------------------------- .h5 parity


def test_h5_backbone_matches_the_official_outputs_on_the_official_patches():
    ref, tol = npz("reference.npz"), atol()
    patches = np.concatenate([ref[f"{k}/patches"] for k in INPUTS])
    out = jax.device_get(programs()[1](state_of("h5"), jnp.asarray(patches[:, None])))
    start = 0
    for k in INPUTS:
        n = ref[f"{k}/patches"].shape[0]
        rows = slice(start, start + n)
        check(f"{k} embeddings (official patches)", out["embeddings"][rows, 0], ref[f"{k}/embeddings"],
              tol["embeddings"])
        check(f"{k} logits (official patches)", out["logits"][rows, 0], ref[f"{k}/logits"], tol["logits"])
        check(f"{k} scores (official patches)", out["framewise_output"][rows, 0], ref[f"{k}/scores"], tol["scores"])
        if k == "tones_975ms":
            for layer in (1, 3, 6, 13, 14):
                check(f"{k} layer{layer}_out", out[f"layer{layer}_out"][rows], ref[f"{k}/layer{layer}_out"],
                      tol[f"layer{layer}_out"])
        start += n


def test_h5_end_to_end_matches_the_official_model():
    ref, tol = npz("reference.npz"), atol()
    ours = run_inputs("h5")
    for k in INPUTS:
        o = ours[k]
        check(f"{k} embeddings (waveform)", o["embeddings"], ref[f"{k}/embeddings"], tol["embeddings_end_to_end"])
        check(f"{k} logits (waveform)", o["logits"], ref[f"{k}/logits"], tol["logits_end_to_end"])
        check(f"{k} scores (waveform)", o["framewise_output"], ref[f"{k}/scores"], tol["scores_end_to_end"])
        # Clip = mean over the clip's own patches (num_samples leaves out the batch padding).
        np.testing.assert_allclose(o["clipwise_output"], o["framewise_output"].mean(0), atol=1e-6)
        np.testing.assert_allclose(o["latent_output"], o["embeddings"].mean(0), atol=1e-6)


def test_float64_backbone_matches_the_official_float64_run():
    config, weights, _ = converted("h5")
    ref64, ref = npz("reference_float64.npz"), npz("reference.npz")
    with jax.enable_x64(True):
        model = ckpt_lib.build_model(config, weights, param_dtype=jnp.float64)
        patches = np.concatenate([ref[f"{k}/patches"] for k in INPUTS]).astype(np.float64)
        graphdef, state = nnx.split(model)

        @jax.jit
        def forward(state, p):
            cap = {}
            out = nnx.merge(graphdef, state).forward_patches(p, capture=cap)
            return {"layer14_out": cap["layer14_out"], **out}

        out = jax.device_get(forward(state, jnp.asarray(patches[:, None])))
        assert out["logits"].dtype == np.float64
        start = 0
        for k in INPUTS:
            rows = slice(start, start + ref[f"{k}/patches"].shape[0])
            check(f"{k} float64 embeddings", out["embeddings"][rows, 0], ref64[f"{k}/embeddings"], 1e-10)
            check(f"{k} float64 logits", out["logits"][rows, 0], ref64[f"{k}/logits"], 1e-10)
            check(f"{k} float64 scores", out["framewise_output"][rows, 0], ref64[f"{k}/scores"], 1e-10)
            if k == "tones_975ms":
                check("tones_975ms float64 layer14_out", out["layer14_out"][rows],
                      ref64["tones_975ms/layer14_out"], 1e-10)
            start = rows.stop


def test_parameter_counts():
    model = models.abstract(yamnet.Config())
    assert yamnet.param_count(model) == 3_729_481
    params = nnx.state(model, nnx.Param)
    head = sum(x.size for x in jax.tree.leaves(params["logits"]))
    assert head == 534_025 and yamnet.param_count(model) - head == 3_195_456
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))) == 21_888


# ---------------------------------------------------------------------------------------------- converter errors


def _h5_copy(tmp_path, edit) -> str:
    import h5py

    path = tmp_path / "edited.h5"
    shutil.copy(require(FIX / "yamnet_random.h5"), path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return str(path)


def test_h5_errors_name_the_dataset(tmp_path):
    dw = "layer5/depthwise_conv/layer5/depthwise_conv/depthwise_kernel:0"
    beta = "layer7/pointwise_conv/bn/layer7/pointwise_conv/bn/beta:0"

    path = _h5_copy(tmp_path, lambda f: f.__delitem__(beta))
    with pytest.raises(CheckpointError, match="missing datasets: " + re.escape(beta)):
        convert.read_h5(path)

    (tmp_path / "edited.h5").unlink()

    def reshape(f):
        del f[dw]
        f.create_dataset(dw, data=np.zeros((3, 3, 128, 2), np.float32))
    path = _h5_copy(tmp_path, reshape)
    with pytest.raises(CheckpointError, match=r"depthwise_kernel:0 has shape \(3, 3, 128, 2\), YAMNet expects "
                                              r"\(3, 3, 128, 1\)"):
        convert.read_h5(path)

    (tmp_path / "edited.h5").unlink()
    gamma = "layer3/depthwise_conv/bn/layer3/depthwise_conv/bn/gamma:0"
    path = _h5_copy(tmp_path, lambda f: f.create_dataset(gamma, data=np.ones(64, np.float32)))
    with pytest.raises(CheckpointError, match="unexpected datasets .*" + re.escape(gamma)):
        convert.read_h5(path)

    (tmp_path / "edited.h5").unlink()
    path = _h5_copy(tmp_path, lambda f: f.__delitem__("logits"))
    with pytest.raises(CheckpointError, match="logits/logits/kernel:0"):
        convert.read_h5(path)
    config, weights, report = convert.read_h5(path, require_head=False)   # backbone only (init_from)
    assert "logits" not in weights and "backbone only" in report.summary()
    ten = yamnet.Config(num_classes=10)
    merged, summary = yamnet.init_from(path, ten, random_weights(ten))
    assert "left at their initial values (logits/bias, logits/kernel)" in summary
    np.testing.assert_array_equal(merged["backbone"]["layer2"]["pointwise_conv"]["kernel"],
                                  weights["backbone"]["layer2"]["pointwise_conv"]["kernel"])

    (tmp_path / "edited.h5").unlink()

    def rename_head(f):  # Keras' automatic name for the unnamed Dense layer
        f.move("logits/logits", "logits/dense")
        f.move("logits", "dense")
    path = _h5_copy(tmp_path, rename_head)
    _, renamed, report = convert.read_h5(path)
    np.testing.assert_array_equal(renamed["logits"]["kernel"], converted("h5")[1]["logits"]["kernel"])
    assert "'dense'" in report.summary()


# ---------------------------------------------------------------------------------------------- .tflite


def test_tflite_reader_agrees_with_the_fixture_tensor_map():
    table = json.loads(require(FIX / "tflite_tensors.json").read_text())["dhiveej"]
    m = convert.TfliteModel(str(TFLITE))
    assert len(m.tensors) == len(table["tensors"]) and len(m.ops) == len(table["ops"])
    for ours, ref in zip(m.tensors, table["tensors"]):
        assert (ours.name, list(ours.shape), ours.dtype) == (ref["name"], ref["shape"], ref["dtype"])
        if ref["quantization"] and ours.scale.size:
            q = ref["quantization"]
            assert ours.scale.size == q["n_scales"] and ours.quantized_dimension == q["quantized_dimension"]
            np.testing.assert_array_equal(ours.scale[:4], np.float32(q["scales_first4"]))
    for ours, (index, name, inputs, outputs) in zip(m.ops, table["ops"]):
        assert (ours.index, ours.name, list(ours.inputs), list(ours.outputs)) == (index, name, inputs, outputs)
    for layer, entry in table["weight_map"].items():
        op = m.ops[entry["op_index"]]
        assert op.inputs[1] == entry["weight_tensor"] and convert.describe_storage(
            m.tensors[entry["weight_tensor"]]).split(" (")[0] in entry["weight_storage"]


def test_tflite_equals_the_official_float_model_with_its_dequantized_weights():
    ref, tol = npz("tflite_reference.npz"), atol()
    config, _, report = converted("tflite")
    assert config.num_classes == 521 and len(report.verified) == 3  # window, mel matrix, log offset
    ours = run_inputs("tflite")
    for k in ("tones_975ms", "noise_975ms", "speech_975ms"):
        o = ours[k]
        check(f"tflite {k} scores vs float model", o["framewise_output"], ref[f"dhiveej/{k}/float_model_scores"],
              tol["scores"])
        check(f"tflite {k} embeddings vs float model", o["embeddings"], ref[f"dhiveej/{k}/float_model_embeddings"],
              tol["embeddings"])
        check(f"tflite {k} logits vs float model", o["logits"], ref[f"dhiveej/{k}/float_model_logits"], tol["logits"])
        runtime = ref[f"dhiveej/{k}/scores"]
        print(f"tflite {k} vs the TFLite runtime: max |diff| {np.abs(o['framewise_output'] - runtime).max():.3g}, "
              f"top-1 same {o['framewise_output'].argmax() == runtime.argmax()}")
        assert o["framewise_output"].argmax() == runtime.argmax()  # the fixture: identical on all three
    names = report.class_names
    assert names[ours["speech_975ms"]["framewise_output"][0].argmax()] == "Speech"
    assert names[ours["noise_975ms"]["framewise_output"][0].argmax()] == "White noise"


@pytest.mark.acceptance
def test_esc10_clips_match_the_official_float_model():
    from htsat_jax.data.audio import load_mono

    ref = npz("esc10_reference.npz")
    clips = json.loads(require(FIX / "esc10_reference.json").read_text())["clips"]
    names = sorted(ref)
    assert len(names) == 83
    waves = np.stack([load_mono(ESC10 / "audio" / n, 16000).waveform for n in names])   # soxr HQ
    state, chunk, scores = state_of("tflite"), 28, []
    for start in range(0, len(names), chunk):
        rows = waves[start:start + chunk]
        batch = np.zeros((chunk, waves.shape[1]), np.float32)
        batch[:len(rows)] = rows
        out = programs()[0](state, jnp.asarray(batch), jnp.full((chunk,), waves.shape[1], jnp.int32))
        scores.append(np.asarray(out["clipwise_output"])[:len(rows)])
    ours = np.concatenate(scores)
    want = np.stack([ref[n] for n in names])
    check("ESC-10 clip scores vs esc10_reference (83 clips)", ours, want, 0.01)
    top1 = float(np.mean(ours.argmax(1) == want.argmax(1)))
    runtime = float(np.mean([ours[i].argmax() == clips[n]["runtime_top5"][0] for i, n in enumerate(names)]))
    print(f"ESC-10 top-1 agreement: {top1:.3f} with the float model, {runtime:.3f} with the TFLite runtime "
          "(the fixture's float model: 0.940)")
    assert top1 >= 0.98
    assert all(list(np.argsort(-ours[i])[:5]) == clips[n]["float_top5"] for i, n in enumerate(names)
               if np.sort(want[i])[-5] - np.sort(want[i])[-6] > 1e-4)


# ---------------------------------------------------------------------------------------------- names, loading


def test_class_names_are_audioset_without_six():
    names = convert.yamnet_class_names()
    with open(require(SHARED / "weights" / "yamnet" / "yamnet_class_map.csv"), newline="", encoding="utf-8") as f:
        official = [row["display_name"] for row in csv.DictReader(f)]
    assert names == official
    assert (names[494], names[495], names[514]) == ("Silence", "Sine wave", "White noise")


def test_can_load_and_registry(tmp_path):
    module = models.get("yamnet")
    assert module is yamnet and models.find_loader(str(TFLITE)) is yamnet
    assert yamnet.can_load(str(FIX / "yamnet_random.h5")) and yamnet.can_load(str(TFLITE))
    (tmp_path / "x.tflite").write_bytes(b"\0" * 64)
    assert not yamnet.can_load(str(tmp_path / "x.tflite")) and not yamnet.can_load(str(FIX / "inputs.npz"))
    c = yamnet.Config(clip_pool="max", num_classes=10)
    assert yamnet.Config.from_dict(c.to_dict()) == c and ckpt_lib.config_from_dict(ckpt_lib.config_to_dict(c)) == c
    with pytest.raises(ValueError, match="16000"):
        yamnet.Config(sample_rate=32000)
    assert yamnet.frame_seconds(c, 16000) == 0.48


def test_tflite_label_file_is_checked(tmp_path):
    names = convert.yamnet_class_names()

    def with_labels(labels, name):
        path = tmp_path / name
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("yamnet_label_list.txt", "\n".join(labels) + "\n")
        path.write_bytes(TFLITE.read_bytes() + buffer.getvalue())  # MediaPipe: metadata zip appended
        return str(path)

    _, _, report = convert.read_tflite(with_labels(names, "same.tflite"))
    assert report.class_names == names and "yamnet_label_list.txt" in report.verified
    changed = names[:3] + ["Something else"] + names[4:]
    _, _, report = convert.read_tflite(with_labels(changed, "changed.tflite"))
    assert report.class_names == changed and "differ from the derived AudioSet list at 1 indices" in report.summary()
    with pytest.raises(CheckpointError, match="lists 5 classes"):
        convert.read_tflite(with_labels(names[:5], "short.tflite"))


# ---------------------------------------------------------------------------------------------- tagger, CLIs


@functools.lru_cache(maxsize=None)
def tagger():
    from htsat_jax.inference.tagger import AudioTagger

    return AudioTagger.from_checkpoint(str(TFLITE), batch_size=8)


@pytest.mark.acceptance
def test_tagger_and_predict_tag_every_dog_clip_as_dog():
    from htsat_jax.inference import predict

    with open(require(ESC10 / "meta" / "esc50.csv"), newline="") as f:
        dogs = [str(ESC10 / "audio" / r["filename"]) for r in csv.DictReader(f) if r["category"] == "dog"]
    assert len(dogs) >= 5
    tag = tagger()
    assert tag.config.num_classes == 521 and tag.names[0] == "Speech"
    result = predict.run(tag, dogs, progress=False, verbose=False)
    assert not result["errors"] and len(result["files"]) == len(dogs)
    for record in result["files"]:
        labels = [t["label"] for t in record["tags"]]
        assert "Dog" in labels, (record["file"], labels)
        assert record["windows"]["count"] == 1 and any("zero-padded" in n for n in record["notes"])
    # The windowed analysis of a clip that fits one window is the model on the clip itself.
    from htsat_jax.data.audio import load_mono

    wave = load_mono(dogs[0], 16000).waveform
    direct = tag(wave, 16000)
    analysis = tag.analyse(wave, 16000)
    np.testing.assert_allclose(analysis.clip_scores, direct["clipwise_output"][0], atol=2e-6)
    np.testing.assert_allclose(analysis.latent, direct["latent_output"][0], atol=1e-5)
    grid = tag.windows().num_frames(len(wave))
    assert analysis.framewise.shape == (grid, 521) and analysis.seconds_per_frame == 0.48
    fw = direct["framewise_output"][0]
    np.testing.assert_allclose(analysis.framewise[1], fw[:2].mean(0), atol=2e-6)   # step 1 = patches 0 and 1
    # Long audio in windows (3 s every 1.44 s): the stitched map covers the recording.
    long = np.concatenate([wave, wave[::-1]])
    a = tag.analyse(long, 16000, window_s=3.0, hop_s=1.5)
    assert len(a.window_starts) > 1 and all(s % 7680 == 0 for s in a.window_starts)
    assert a.framewise.shape == (tag.windows(3.0, 1.5).num_frames(len(long)), 521)
    emb = tag.embed(wave, 16000)
    assert emb["frames"].shape[1] == 1024 and emb["frame_times"][1, 0] == pytest.approx(0.48)


@pytest.mark.integration
def test_convert_cli_writes_a_model_directory(tmp_path):
    from htsat_jax.convert.__main__ import main
    from htsat_jax.inference.tagger import AudioTagger

    out = tmp_path / "yamnet_model"
    assert main(["yamnet-tflite", str(TFLITE), str(out)]) == 0
    loaded = AudioTagger.from_checkpoint(str(out))
    assert loaded.names == convert.yamnet_class_names()
    x = npz("inputs.npz")["chirp_3p3s"]
    a, b = loaded(x, 16000), tagger()(x, 16000)
    for k in ("clipwise_output", "framewise_output", "latent_output"):
        np.testing.assert_array_equal(a[k], b[k])
    # init_from the directory: same classes -> every tensor; another class count -> fresh classifier.
    ten = yamnet.Config(num_classes=10)
    _, summary = yamnet.init_from(str(out), ten, random_weights(ten))
    assert "left at their initial values (logits/bias, logits/kernel)" in summary
    weights, summary = yamnet.init_from(str(TFLITE), yamnet.Config(), random_weights(yamnet.Config()))
    assert "0 left at their initial values" in summary and "freeze_bn" in summary
    assert main(["yamnet-h5", str(FIX / "yamnet_random.h5"), str(tmp_path / "h5_model"), "--clip_pool", "max"]) == 0
    assert ckpt_lib.load_weights(str(tmp_path / "h5_model"))[0].clip_pool == "max"


# ---------------------------------------------------------------------------------------------- training


def test_tiny_trains_and_batchnorm_modes():
    config = yamnet.Config(**yamnet.VARIANTS["tiny"], num_classes=5)
    assert config.embedding_dim == 128
    x = jnp.asarray(np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32))
    target = jnp.asarray([[1, 0, 0, 0, 1], [0, 1, 0, 0, 0]], jnp.float32)

    def step(config, lam, grad=True):
        """The trainer's step pattern: grads of the clip BCE, BatchNorm statistics as aux; plus eval outputs."""
        graphdef, params, rest = nnx.split(ckpt_lib.build_model(config, random_weights(config)), nnx.Param, ...)

        def loss(params, rest):
            # Fresh Variables at this trace level (as the trainer's merged_model), so BatchNorm may update.
            m = nnx.merge(graphdef, jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, rest))
            out = m(x, train=True, key=jax.random.key(0), mixup_lambda=lam)
            p = jnp.clip(out["clipwise_output"], 1e-7, 1 - 1e-7)
            return -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log(1 - p)), nnx.state(m, nnx.BatchStat)

        @jax.jit
        def run(params, rest):
            if grad:
                (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, rest)
            else:
                (value, stats), grads = loss(params, rest), None
            return value, stats, grads, nnx.merge(graphdef, params, rest)(x)

        return jax.device_get(run(params, rest))

    value, stats, grads, out = step(config, jnp.asarray([0.7, 0.3]))
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert np.abs(np.asarray(stats["backbone"]["layer3"]["pointwise_bn"]["mean"][...])).max() > 0  # moving stats moved
    assert out["framewise_output"].shape == (2, 2, 5) and out["latent_output"].shape == (2, 128)
    _, stats, _, _ = step(dataclasses.replace(config, freeze_bn=True), None, grad=False)
    np.testing.assert_array_equal(np.asarray(stats["backbone"]["layer3"]["pointwise_bn"]["mean"][...]), 0.0)
    _, _, _, ce = step(dataclasses.replace(config, loss_type="clip_ce", clip_pool="max"), None, grad=False)
    np.testing.assert_allclose(ce["clipwise_output"], ce["logits"].max(axis=1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ce["framewise_output"]).sum(-1), 1.0, atol=1e-5)
