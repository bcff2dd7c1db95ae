"""ONNX export (htsat_jax/export.py): onnxruntime outputs match the JAX model, metadata, CLI, errors.

Tolerance: every output within ATOL = 1e-4 (absolute; outputs are probabilities in [0, 1] and
latents of order 1). Both sides compute in float32 but not the same float32 operations: ONNX
Runtime's DFT, GEMMs, LayerNorm and softmax round differently from XLA's. The frontend feeds a
log, so near-silent mel bins (power near the 1e-10 floor) carry the FFT's relative rounding
into dB (the check signal's bins at -98 dB differ by 0.2 dB between the two frontends, bins above
-60 dB by < 0.005 dB), and bn0 + 7 Swin blocks pass it on. Measured on the official tiny checkpoint,
10 s and 5 s clips: <= 2.4e-6 on the official fixture waveforms and the spoken digit (noise floor
around -65 dB), <= 5.1e-5 on the synthetic chirp-and-noise check signal (upper mel bins empty
between bursts); 1e-4 leaves a 2x margin.
"""

import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import FIXTURES, SHARED
from helpers import inputs, tiny_checkpoint
from htsat_jax import AudioTagger, checkpoint
from htsat_jax.inference import export
from htsat_jax.inference.tagger import OUTPUT_NAMES, resample
from htsat_jax.models.htsat import HTSATConfig

ATOL = 1e-4
SR = 32000
SPOKEN_DIGIT = SHARED / "data" / "fsdd_speechcommands_subset" / "eight" / "jackson_nohash_0.wav"


@pytest.fixture(scope="module")
def tagger():
    config, weights = tiny_checkpoint()
    return AudioTagger(checkpoint.build_model(config, weights), batch_size=1)


@pytest.fixture(scope="module")
def exported(tagger, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    info = export.export_onnx(tagger, str(path))  # dynamic batch, 10 s
    return info, export.onnx_session(info["path"])


def _speech_clip() -> np.ndarray:
    """A real recording (8 kHz spoken digit) resampled to 32 kHz and placed at 3 s in 10 s of quiet noise."""
    audio, rate = sf.read(str(SPOKEN_DIGIT), dtype="float32")
    speech = resample(audio[None], rate, SR)[0]
    clip = np.random.default_rng(0).normal(scale=1e-3, size=10 * SR).astype(np.float32)
    clip[3 * SR:3 * SR + speech.shape[0]] += speech
    return clip


def _waveforms() -> np.ndarray:
    """(4, 320000): the two official fixture clips, the spoken digit, the export's check signal."""
    return np.concatenate([inputs()["waveform_32k"], _speech_clip()[None],
                           export.check_signal(10 * SR, SR, batch=1)])


def _assert_close(got, ref, atol=ATOL):
    for name, value in zip(OUTPUT_NAMES, got):
        assert value.shape == ref[name].shape, name
        np.testing.assert_allclose(value, ref[name], atol=atol, rtol=0, err_msg=name)


def test_export_frontend_equals_the_model_frontend():
    import jax

    from htsat_jax.models import frontend

    x = np.concatenate([inputs()["waveform_32k"][:, :50000], _speech_clip()[None, :50000]])
    for cfg in (frontend.AUDIOSET_FRONTEND, frontend.SPEECH_COMMANDS_FRONTEND):
        ours = jax.jit(lambda w: export.log_mel(w, cfg))(x)
        ref = jax.jit(lambda w: frontend.log_mel(w, cfg))(x)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_onnx_matches_jax_for_any_batch(tagger, exported):
    info, session = exported
    assert info["inputs"] == [{"name": "waveform", "shape": ["batch", 320000], "dtype": "float32"}]
    assert [o["name"] for o in info["outputs"]] == list(OUTPUT_NAMES)
    assert info["outputs"][1]["shape"] == ["batch", 1024, 10]
    x = _waveforms()
    ref = tagger(x, SR)  # the official inference forward, one clip at a time
    assert ref["clipwise_output"].max() - ref["clipwise_output"].min() > 0.1  # non-trivial outputs
    for rows in (slice(0, 4), slice(2, 3), slice(0, 3)):  # batch 4, 1, 3; traced with a symbolic batch
        got = session.run(list(OUTPUT_NAMES), {"waveform": x[rows]})
        _assert_close(got, {k: v[rows] for k, v in ref.items()})


def test_metadata(tagger, exported):
    info, _ = exported
    meta = export.read_metadata(info["path"])
    assert meta["class_names"] == tagger.names and meta["sample_rate"] == SR and meta["num_samples"] == 320000
    assert meta["output_names"] == list(OUTPUT_NAMES) and meta["clipwise_activation"] == "sigmoid"
    assert HTSATConfig.from_dict(meta["model_config"]) == tagger.config
    assert info["bytes"] > 1e6 and info["opset"] == export.DEFAULT_OPSET


def test_cli_end_to_end_fixed_batch_and_short_clip(tagger, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"sound {i}" for i in range(10)))
    ckpt = str(FIXTURES / "tiny" / "htsat_tiny.ckpt")
    code = export.main(["--checkpoint", ckpt, "--output", str(out), "--seconds", "5", "--batch", "2",
                        "--class_names", str(names)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "waveform float32 (2, 160000)" in printed
    meta = export.read_metadata(str(out))
    assert meta["class_names"][3] == "sound 3" and meta["num_samples"] == 160000
    # The CLI checked its file on a 5 s check signal (the inference path tiles the log-mel twice
    # before stretching, in the graph too): "onnxruntime vs JAX, max |diff| ...: clipwise_output 1.2e-07, ..."
    report = printed.split("onnxruntime vs JAX")[1].splitlines()[0].split(":", 1)[1]
    errors = {k: float(v) for k, v in (item.split() for item in report.split(","))}
    assert set(errors) == set(OUTPUT_NAMES) and max(errors.values()) <= ATOL, errors


def test_errors(tagger, tmp_path, capsys, monkeypatch):
    assert export.main(["--checkpoint", str(tmp_path / "nope"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert export.main(["--checkpoint", str(tmp_path), "--output", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="too long for the inference path"):
        export.export_onnx(tagger, str(tmp_path / "m.onnx"), num_samples=11 * SR)
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as if not installed
    with pytest.raises(export.ExportError, match="pip install -r requirements-export.txt"):
        export.export_onnx(tagger, str(tmp_path / "m.onnx"))
