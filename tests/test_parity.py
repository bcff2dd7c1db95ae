"""Parity with the official PyTorch HTS-AT (fixtures in ../shared/fixtures/official_htsat)."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FIXTURES, SHARED, require
from helpers import inputs, run, tiny_checkpoint, to_official_layout
from htsat_jax import checkpoint
from htsat_jax.convert import torch_htsat as convert
from htsat_jax.models import frontend
from htsat_jax.models.htsat import HTSATConfig, count_parameters


@pytest.fixture(scope="module")
def tiny_f32_outputs():
    config, weights = tiny_checkpoint()
    model = checkpoint.build_model(config, weights)
    return run(model, jnp.asarray(inputs()["waveform_32k"]), capture=True)


def test_tiny_float32_every_array_within_tolerance(tiny_f32_outputs):
    ref = np.load(require(FIXTURES / "tiny" / "reference.npz"))
    tol = json.loads((FIXTURES / "tiny" / "tolerances.json").read_text())
    assert set(ref.files) <= set(tiny_f32_outputs), set(ref.files) - set(tiny_f32_outputs)
    for name in ref.files:
        ours = to_official_layout(name, tiny_f32_outputs[name], ref[name].shape)
        np.testing.assert_allclose(ours, ref[name], rtol=tol[name]["suggested_rtol"],
                                   atol=tol[name]["suggested_atol"], err_msg=name)


def test_tiny_float64_matches_official_float64_at_rounding_level():
    ref = np.load(require(FIXTURES / "tiny" / "reference_float64.npz"))
    with jax.enable_x64(True):
        config, weights = convert.load_torch_checkpoint(str(FIXTURES / "tiny" / "htsat_tiny.ckpt"),
                                                        dtype=np.float64)
        model = checkpoint.build_model(config, weights, dtype=jnp.float64, param_dtype=jnp.float64)
        # The official float64 run used float32-valued conv-STFT kernels; feed its log-mel to compare
        # everything downstream at rounding level (fixture README, "float64 port").
        capture = {}
        out = model.forward_logmel(jnp.asarray(ref["logmel_before_bn0"][:, 0]), capture=capture)
        allv = {**capture, **out}
        for name in ref.files:
            if name == "logmel_before_bn0":
                continue
            ours = to_official_layout(name, allv[name], ref[name].shape)
            assert ours.dtype == np.float64, name
            np.testing.assert_allclose(ours, ref[name], rtol=1e-9, atol=1e-9, err_msg=name)
        # End to end from the waveform, the exact FFT frontend differs from the float32 kernels by
        # at most 1.3e-4 dB (fixture README); the outputs barely move.
        e2e = run(model, jnp.asarray(inputs()["waveform_32k"].astype(np.float64)))
        np.testing.assert_allclose(np.asarray(frontend.log_mel(jnp.asarray(inputs()["waveform_32k"],
                                                                           jnp.float64))),
                                   ref["logmel_before_bn0"][:, 0], atol=2e-4)
        np.testing.assert_allclose(e2e["clipwise_output"], ref["clipwise_output"], atol=1e-6)


@pytest.mark.parametrize("dataset,fe,wave", [
    ("audioset", frontend.AUDIOSET_FRONTEND, "waveform_32k"),
    ("esc50", frontend.AUDIOSET_FRONTEND, "waveform_32k"),
    ("scv2", frontend.SPEECH_COMMANDS_FRONTEND, "waveform_16k"),
])
def test_frontend_matches_official_for_each_dataset(dataset, fe, wave):
    ref = np.load(require(FIXTURES / "frontend" / "reference.npz"))
    tol = json.loads((FIXTURES / "frontend" / "tolerances.json").read_text())[dataset]
    cfg = json.loads((FIXTURES / "frontend" / "config.json").read_text())[dataset]
    assert (fe.sample_rate, fe.n_fft, fe.hop_length, fe.n_mels, fe.fmin, fe.fmax) == (
        cfg["sample_rate"], cfg["window_size"], cfg["hop_size"], cfg["mel_bins"], cfg["fmin"], cfg["fmax"])
    np.testing.assert_array_equal(frontend.mel_filterbank(fe), ref[f"{dataset}_melW"])
    ours = np.asarray(jax.jit(lambda x: frontend.log_mel(x, fe))(jnp.asarray(inputs()[wave])))
    assert ours.shape == (2, cfg["frames"], 64)
    np.testing.assert_allclose(ours, ref[f"{dataset}_logmel"][:, 0], rtol=0, atol=tol["suggested_atol_logmel"])
    # The empty filters of the 16 kHz setting (fmax above Nyquist) are the -100 dB floor, as officially.
    empty = cfg["empty_mel_filters"]
    if empty:
        assert np.all(ours[:, :, empty] == -100.0)


def _official_keys_from_spec():
    """Appendix A of HTSAT_SPEC.md: every key of the full AudioSet model with its shape."""
    text = require(SHARED / "reference" / "HTSAT_SPEC.md").read_text()
    appendix = text[text.index("## Appendix A"):]
    rows = re.findall(r"^sed_model\.(\S+)\s+\(([\d, ]*)\)", appendix, flags=re.M)
    return {k: tuple(int(d) for d in s.split(",") if d.strip()) for k, s in rows}


def test_full_audioset_model_has_the_official_keys_shapes_and_parameter_count():
    spec_keys = _official_keys_from_spec()
    assert len(spec_keys) == 200
    ours = convert.official_key_shapes(HTSATConfig())
    assert ours == spec_keys
    total = sum(int(np.prod(s)) for k, s in ours.items()
                if "relative_position_index" not in k and "attn_mask" not in k
                and "running_" not in k and "num_batches" not in k)
    assert total == 31_325_143  # official nn.Parameters
    frozen = sum(int(np.prod(ours[k])) for k in ours if k.startswith(("spectrogram_extractor", "logmel_extractor")))
    dead_head = int(np.prod(ours["head.weight"])) + int(np.prod(ours["head.bias"]))
    assert total - frozen == 30_241_687  # official trainable
    model = checkpoint.abstract_model(HTSATConfig())
    # Ours: the frozen frontend constants are recomputed, not stored, and the unused head is dropped.
    assert count_parameters(model) == 31_325_143 - frozen - dead_head == 29_963_431


def test_full_size_checkpoint_round_trip_through_official_format(tmp_path):
    """A 527-class paper-size model exported to the official container converts back exactly."""
    torch = pytest.importorskip("torch")
    config = HTSATConfig()
    model = checkpoint.build_model(config, seed=3)
    weights = jax.tree.map(np.asarray, checkpoint.nnx.to_pure_dict(checkpoint.nnx.state(model)))
    sd = convert.export_state_dict(weights, config)
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"state_dict": {convert.PREFIX + k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}},
               path)
    config2, weights2, report = convert.load_torch_checkpoint(str(path), return_report=True)
    assert config2 == config
    assert len(report.converted) + len(report.verified) + len(report.dropped) == 200
    jax.tree.map(np.testing.assert_array_equal, weights2, weights)
