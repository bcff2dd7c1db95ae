"""Official checkpoint converter: containers, architecture inference, errors, CLI."""

import numpy as np
import pytest

from conftest import FIXTURES
from helpers import inputs, tiny_checkpoint
from htsat_jax import AudioTagger, CheckpointError, checkpoint
from htsat_jax.convert import __main__ as convert_cli
from htsat_jax.convert import torch_htsat as convert

torch = pytest.importorskip("torch")
TINY_CKPT = FIXTURES / "tiny" / "htsat_tiny.ckpt"


@pytest.fixture(scope="module")
def official_sd():
    return torch.load(TINY_CKPT, map_location="cpu", weights_only=True)["state_dict"]


def _save(tmp_path, obj, name="x.ckpt"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_infers_tiny_architecture():
    config, _ = tiny_checkpoint()
    assert (config.num_classes, config.embed_dim, config.depths, config.num_heads, config.window_size) == (
        10, 16, (2, 2, 2, 1), (2, 4, 8, 16), 8)
    assert config.frontend.sample_rate == 32000 and config.frontend.hop_length == 320
    assert config.spec_size == 256 and config.patch_size == 4 and config.loss_type == "clip_bce"


def test_raw_lightning_checkpoint_with_int64_buffers(tmp_path, official_sd):
    sd = {k: (v.long() if k.endswith(("relative_position_index", "num_batches_tracked")) else v)
          for k, v in official_sd.items()}
    obj = {"epoch": 7, "global_step": 1234, "pytorch-lightning_version": "1.5.9", "state_dict": sd,
           "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.4)}},
           "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}], "lr_schedulers": [{}]}
    config, weights, report = convert.load_torch_checkpoint(_save(tmp_path, obj), return_report=True)
    assert "Lightning" in report.container and "optimizer_states" in report.container
    ref_config, ref_weights = tiny_checkpoint()
    assert config == ref_config
    import jax
    jax.tree.map(np.testing.assert_array_equal, weights, ref_weights)


def test_bare_state_dict_without_prefix(tmp_path, official_sd):
    bare = {k[len("sed_model."):]: v for k, v in official_sd.items()}
    config, _ = convert.load_torch_checkpoint(_save(tmp_path, bare))
    assert config == tiny_checkpoint()[0]


def test_every_key_is_accounted_for(official_sd):
    _, _, report = convert.load_torch_checkpoint(str(TINY_CKPT), return_report=True)
    accounted = set(report.converted) | set(report.verified) | set(report.dropped)
    assert accounted == {k[len("sed_model."):] for k in official_sd}
    assert set(report.dropped) == {"head.weight", "head.bias", "bn0.num_batches_tracked"}
    assert "logmel_extractor.melW" in report.verified


@pytest.mark.parametrize("mutate,message", [
    (lambda sd: sd.pop("sed_model.layers.1.blocks.0.mlp.fc1.bias"), "missing key(s): layers.1.blocks.0.mlp.fc1.bias"),
    (lambda sd: sd.__setitem__("sed_model.layers.0.blocks.0.extra.weight", torch.zeros(3)), "unknown key(s)"),
    (lambda sd: sd.__setitem__("sed_model.norm.bias", torch.zeros(7)),
     "key 'norm.bias' has shape (7,), the model expects (128,)"),
    (lambda sd: sd.__setitem__("sed_model.logmel_extractor.melW", sd["sed_model.logmel_extractor.melW"] * 1.01),
     "matches no known frontend"),
    (lambda sd: sd["sed_model.layers.0.blocks.1.attn_mask"].mul_(0), "attn_mask"),
    (lambda sd: sd["sed_model.bn0.running_var"].__setitem__(0, float("nan")), "NaN"),
])
def test_bad_checkpoints_name_the_key(tmp_path, official_sd, mutate, message):
    sd = {k: v.clone() for k, v in official_sd.items()}
    mutate(sd)
    with pytest.raises(CheckpointError, match=None) as err:
        convert.load_torch_checkpoint(_save(tmp_path, {"state_dict": sd}))
    assert message in str(err.value)
    assert "x.ckpt" in str(err.value)


def test_frontend_constant_mismatch_is_reported(tmp_path, official_sd):
    sd = {k: v.clone() for k, v in official_sd.items()}
    sd["sed_model.spectrogram_extractor.stft.conv_real.weight"][3, 0, 10] += 0.5
    with pytest.raises(CheckpointError, match="conv_real.weight' differs from this frontend"):
        convert.load_torch_checkpoint(_save(tmp_path, {"state_dict": sd}))


def test_other_models_and_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="Swin ImageNet checkpoint"):
        convert.load_torch_checkpoint(str(FIXTURES / "swin_import" / "swin_layout_tiny_random.pth"))
    with pytest.raises(CheckpointError, match="missing key 'logmel_extractor.melW'"):
        convert.load_torch_checkpoint(_save(tmp_path, {"state_dict": {"fc.weight": torch.zeros(2, 2)}}))
    with pytest.raises(CheckpointError, match="not found"):
        convert.load_torch_checkpoint(str(tmp_path / "nope.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="could not read .*junk.ckpt"):
        convert.load_torch_checkpoint(str(junk))


def test_cli_writes_a_directory_every_entry_point_restores(tmp_path, capsys):
    out = tmp_path / "converted"
    classes = tmp_path / "classes.csv"
    classes.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Thing {i}\n" for i in range(10)))
    assert convert_cli.main(["torch-htsat", str(TINY_CKPT), str(out), "--class_names", str(classes)]) == 0
    printed = capsys.readouterr().out
    assert "converted: 112 tensors" in printed and "head.weight" in printed
    config, weights, meta = checkpoint.load_weights(str(out))
    assert config == tiny_checkpoint()[0] and meta["class_names"][3] == "Thing 3"
    tagger = AudioTagger.from_checkpoint(str(out))
    ref = np.load(FIXTURES / "tiny" / "reference.npz")
    got = tagger(inputs()["waveform_32k"], 32000)
    np.testing.assert_allclose(got["clipwise_output"], ref["clipwise_output"], atol=3e-6)
    assert tagger.top_tags(got["clipwise_output"], k=1)[0][0][0].startswith("Thing ")
    # Refuses to overwrite, and a wrong class list is an error, both with exit code 2.
    assert convert_cli.main(["torch-htsat", str(TINY_CKPT), str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    classes.write_text("a\nb\n")
    assert convert_cli.main(["torch-htsat", str(TINY_CKPT), str(tmp_path / "o2"), "--class_names", str(classes)]) == 2
    assert "lists 2 classes" in capsys.readouterr().err


def test_model_directory_errors(tmp_path):
    with pytest.raises(checkpoint.CheckpointDirError, match="config.json not found"):
        checkpoint.load_weights(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        AudioTagger.from_checkpoint(str(tmp_path / "missing"))
    config, weights = tiny_checkpoint()
    bad = dict(weights)
    bad.pop("norm")
    with pytest.raises(checkpoint.CheckpointDirError, match="missing \\['norm'\\]"):
        checkpoint.build_model(config, bad)
