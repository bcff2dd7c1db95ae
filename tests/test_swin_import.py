"""Swin ImageNet initialisation: the official import reproduced, other window sizes, errors."""

import functools
import json

import numpy as np
import pytest

from conftest import FIXTURES, require
from htsat_jax import CheckpointError, checkpoint
from htsat_jax.convert import torch_htsat as convert
from htsat_jax.convert import swin_imagenet as swin_import
from htsat_jax.models.htsat import TINY, HTSATConfig

torch = pytest.importorskip("torch")
SWIN_DIR = FIXTURES / "swin_import"
SWIN_PTH = SWIN_DIR / "swin_layout_tiny_random.pth"
CONFIG = HTSATConfig(num_classes=10, **TINY)  # the fixture's HTS-AT: embed 16, depths (2,2,2,1), window 8
BUFFERS = ("relative_position_index", "attn_mask")


@functools.lru_cache(maxsize=None)
def _record():
    return json.loads(require(SWIN_DIR / "swin_import_tiny.json").read_text())


def _sentinel_init(config=CONFIG, seed=0):
    """A pure dict with the model's structure and recognisable values (no slow random init)."""
    import jax
    from flax import nnx

    rng = np.random.default_rng(seed)
    shapes = nnx.to_pure_dict(nnx.state(checkpoint.abstract_model(config)))
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _assert_fits_model(weights, config=CONFIG):
    """Same tree, shapes and dtypes as the model's state (what build_model checks, without the slow init)."""
    import jax
    from flax import nnx

    shapes = nnx.to_pure_dict(nnx.state(checkpoint.abstract_model(config)))
    assert jax.tree.structure(shapes) == jax.tree.structure(weights)
    jax.tree.map(lambda s, w: (s.shape, s.dtype) == (np.shape(w), np.asarray(w).dtype) or pytest.fail(str(s)),
                 shapes, weights)


def _swin_sd():
    return torch.load(require(SWIN_PTH), map_location="cpu", weights_only=True)["model"]


def _save(tmp_path, obj, name="swin.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _torch_resample(table, size):
    """Microsoft Swin's ``load_pretrained``: bicubic F.interpolate of the table as a (heads, S, S) image."""
    rows, heads = table.shape
    s1 = int(rows ** 0.5)
    img = table.permute(1, 0).reshape(1, heads, s1, s1)
    out = torch.nn.functional.interpolate(img, size=(size, size), mode="bicubic")
    return out.reshape(heads, size * size).permute(1, 0)


def test_reproduces_the_official_import_exactly():
    init = _sentinel_init()
    weights, report = swin_import.load_swin_weights(str(SWIN_PTH), CONFIG, init)
    record = _record()
    found = [k[len("sed_model."):] for k in record["found_parameters"]]

    # Every tensor the official import took, compared in the official layout (buffers recomputed).
    ours = convert.export_state_dict(weights, CONFIG)
    ref = np.load(require(SWIN_DIR / "htsat_tiny_after_swin_import.npz"))
    assert len(found) == 116
    for key in found:
        assert ours[key].shape == ref[key].shape, key
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)

    # Same tensors taken (the buffers the official code copies are recomputed here, and equal).
    assert report.resampled == []
    assert report.taken == [k for k in found if not k.endswith(BUFFERS)]
    assert sorted(report.skipped_source) == sorted(record["swin_keys_not_used"]
                                                   + [k for k in found if k.endswith(BUFFERS)])
    unfound = {k[len("sed_model."):] for k in record["unfound_parameters"]}
    assert set(report.left_initial) == {"bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var",
                                        "tscam_conv.weight", "tscam_conv.bias"}
    assert set(report.left_initial) <= unfound
    # ... and those keep the values they were initialised with.
    for part in ("bn0", "tscam_conv"):
        for name, value in init[part].items():
            np.testing.assert_array_equal(weights[part][name], value)
    assert "patch_embed.proj.weight" in report.notes and "averaged" in report.summary()
    assert "taken: 106 tensors" in report.summary()
    _assert_fits_model(weights)


def _window7_checkpoint(tmp_path):
    """The fixture as if trained with window 7: 13x13-row tables (resampled from the 15x15 ones),
    49x49 index buffers, no masks (a 224 px Swin's masks would not fit this geometry anyway)."""
    sd = dict(_swin_sd())
    for key in list(sd):
        if key.endswith("attn_mask"):
            del sd[key]
        elif key.endswith("relative_position_index"):
            sd[key] = torch.zeros(49, 49, dtype=torch.int64)
        elif key.endswith(swin_import.TABLE):
            sd[key] = _torch_resample(sd[key], 13).contiguous()
    return _save(tmp_path, {"model": sd}, "swin_window7.pth"), sd


def test_other_window_size_is_resampled(tmp_path):
    path, sd = _window7_checkpoint(tmp_path)
    init = _sentinel_init()
    weights, report = swin_import.load_swin_weights(path, CONFIG, init)
    tables = [k for k in sd if k.endswith(swin_import.TABLE)]
    assert report.resampled == tables and len(tables) == sum(CONFIG.depths)
    assert not set(report.taken) & set(tables)
    assert report.notes["layers.0.blocks.0.attn.relative_position_bias_table"] == "169x2 -> 225x2"
    assert "resampled (bicubic): 7 relative position bias tables" in report.summary()
    # Partition: every model tensor once, every Swin key once.
    assert len(report.taken) + len(report.resampled) + len(report.left_initial) == 112
    assert sorted(report.taken + report.resampled + report.skipped_source) == sorted(sd)

    ours = convert.export_state_dict(weights, CONFIG)
    for i, heads in enumerate(CONFIG.num_heads):
        for j in range(CONFIG.depths[i]):
            key = f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"
            assert ours[key].shape == (225, heads)
            # Same values as Microsoft's torch code (float32 arithmetic in both; a few ulp apart).
            np.testing.assert_allclose(ours[key], _torch_resample(sd[key], 15).numpy(), rtol=1e-5, atol=1e-6)
    # Everything else is the plain import of the same tensors.
    ref = np.load(require(SWIN_DIR / "htsat_tiny_after_swin_import.npz"))
    for key in report.taken:
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
    _assert_fits_model(weights)


@pytest.mark.parametrize("s1,s2", [(13, 15), (15, 13), (23, 15), (15, 15), (3, 15)])
def test_resampling_matches_torch_and_keeps_constants(s1, s2):
    gen = torch.Generator().manual_seed(s1 * 100 + s2)
    table = torch.randn(s1 * s1, 3, generator=gen)
    ours = swin_import.resample_bias_table(table.numpy(), s2 * s2)
    assert ours.shape == (s2 * s2, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _torch_resample(table, s2).numpy(), rtol=1e-5, atol=1e-5)
    if s1 == s2:
        np.testing.assert_array_equal(ours, table.numpy())
    # Interpolation weights sum to one (up to float32 rounding, as in torch): a constant table stays constant.
    const = np.tile(np.array([[0.5, -2.0, 3.25]], np.float32), (s1 * s1, 1))
    np.testing.assert_allclose(swin_import.resample_bias_table(const, s2 * s2),
                               np.tile(const[:1], (s2 * s2, 1)), rtol=2e-6, atol=0)


def test_htsat_checkpoint_is_not_a_swin_file():
    path = str(require(FIXTURES / "tiny" / "htsat_tiny.ckpt"))
    assert not swin_import.is_swin_state(convert.read_torch_file(path))
    assert swin_import.is_swin_state(convert.read_torch_file(str(SWIN_PTH)))
    with pytest.raises(CheckpointError, match="htsat_tiny.ckpt is not a Swin checkpoint") as err:
        swin_import.load_swin_weights(path, CONFIG, _sentinel_init())
    assert "state_dict" in str(err.value) and "HTS-AT checkpoint" in str(err.value)


@pytest.mark.parametrize("changes,message", [
    (dict(embed_dim=32), r"patch_embed.proj.weight has shape \(16, 3, 4, 4\), i.e. embed_dim 16; the model has "
                         r"embed_dim 32"),
    (dict(depths=(2, 2, 2, 2)), r"depths \(2, 2, 2, 1\) .* the model has depths \(2, 2, 2, 2\)"),
    (dict(num_heads=(1, 2, 4, 8)), r"layers.0.blocks.0.attn.relative_position_bias_table has shape \(225, 2\), "
                                   r"i.e. 2 heads in stage 0"),
    (dict(mlp_ratio=2.0), r"layers.0.blocks.0.mlp.fc1.weight has shape \(64, 16\), the model expects \(32, 16\)"),
])
def test_architecture_mismatch_names_key_and_shapes(changes, message):
    config = HTSATConfig(**{**dict(num_classes=10, **TINY), **changes})
    with pytest.raises(CheckpointError, match=message) as err:
        swin_import.load_swin_weights(str(SWIN_PTH), config, _sentinel_init(config))
    assert "swin_layout_tiny_random.pth" in str(err.value)


def test_other_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a Swin checkpoint.*top-level keys are \\[state\\]"):
        swin_import.load_swin_weights(_save(tmp_path, {"state": {"x": torch.zeros(1)}}), CONFIG, {})
    with pytest.raises(CheckpointError, match="not found"):
        swin_import.load_swin_weights(str(tmp_path / "nope.pth"), CONFIG, {})


def test_trainer_initial_weights_takes_the_swin_path():
    import ml_collections

    from htsat_jax.training import train

    assert train.initial_weights(ml_collections.ConfigDict({"init_from": None, "seed": 0}), CONFIG) == (None, None)
    config = ml_collections.ConfigDict({"init_from": str(SWIN_PTH), "seed": 3})
    weights, summary = train.initial_weights(config, CONFIG)
    assert summary.startswith("Swin import from") and "left at their initial values: 6 tensors" in summary
    ref = np.load(require(SWIN_DIR / "htsat_tiny_after_swin_import.npz"))
    ours = convert.export_state_dict(weights, CONFIG)
    np.testing.assert_array_equal(ours["layers.2.blocks.1.attn.qkv.weight"], ref["layers.2.blocks.1.attn.qkv.weight"])
    # bn0 keeps the fresh initialisation (ones / zeros), the head a random draw.
    np.testing.assert_array_equal(weights["bn0"]["scale"], np.ones(64, np.float32))
    assert np.std(weights["tscam_conv"]["kernel"]) > 0
    _assert_fits_model(weights)


def _layout_state(layout, rng, *, window=None, heads=None):
    """A Swin state dict (numpy) with the shapes of ``layout``; optionally re-shaped to another
    window size / head count (tables, index and mask buffers), like a standard window-7 Swin-T."""
    sd = {}
    for key, spec in layout.items():
        shape = list(spec["shape"])
        if key.endswith(swin_import.TABLE) and window is not None:
            stage = int(key.split(".")[1])
            shape = [(2 * min(window, 56 // 2**stage) - 1) ** 2, heads[stage]]
        if key.endswith(BUFFERS):
            if window is not None:
                continue  # a 224 px Swin's buffers: skipped by the import anyway
            sd[key] = np.zeros(shape, np.dtype(spec["dtype"]))
        else:
            sd[key] = rng.standard_normal(shape).astype(np.float32)
    return sd


def test_real_swin_t_c24_geometry_imports_into_the_paper_model():
    import jax
    from flax import nnx

    record = json.loads(require(SWIN_DIR / "swin_t_c24_layout.json").read_text())
    config = HTSATConfig()  # the paper's AudioSet model: embed 96, depths (2,2,6,2), heads (4,8,16,32), window 8
    init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        nnx.to_pure_dict(nnx.state(checkpoint.abstract_model(config))))
    sd = _layout_state(record["swin_layout"], np.random.default_rng(0))
    weights, report = swin_import.import_swin_state_dict(sd, config, init, source="swin_t_c24")
    found = [k[len("sed_model."):] for k in record["found_parameters"]]
    assert report.taken == [k for k in found if not k.endswith(BUFFERS)] and report.resampled == []
    assert sorted(report.skipped_source) == sorted(record["swin_keys_not_used"]
                                                   + [k for k in found if k.endswith(BUFFERS)])
    assert len(report.left_initial) == 6
    ours = convert.export_state_dict(weights, config)
    np.testing.assert_array_equal(ours["patch_embed.proj.weight"],
                                  sd["patch_embed.proj.weight"].mean(axis=1, keepdims=True))
    np.testing.assert_array_equal(ours["layers.2.blocks.5.mlp.fc2.weight"], sd["layers.2.blocks.5.mlp.fc2.weight"])
    _assert_fits_model(weights, config)


def test_standard_swin_t_window7_needs_its_head_count():
    import jax
    from flax import nnx

    layout = json.loads(require(SWIN_DIR / "swin_t_c24_layout.json").read_text())["swin_layout"]
    # swin_tiny_patch4_window7_224: heads (3, 6, 12, 24), window 7 (the 7x7 last stage too).
    sd = _layout_state(layout, np.random.default_rng(1), window=7, heads=(3, 6, 12, 24))
    with pytest.raises(CheckpointError, match=r"\(169, 3\), i.e. 3 heads in stage 0.*\(3, 6, 12, 24\)"):
        swin_import.import_swin_state_dict(sd, HTSATConfig(), {})
    config = HTSATConfig(num_heads=(3, 6, 12, 24))
    init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        nnx.to_pure_dict(nnx.state(checkpoint.abstract_model(config))))
    weights, report = swin_import.import_swin_state_dict(sd, config, init, source="swin_t_w7")
    assert len(report.resampled) == 12 and len(report.left_initial) == 6  # bn0 (4), tscam_conv (2)
    assert {report.notes[k] for k in report.resampled} == {"169x3 -> 225x3", "169x6 -> 225x6",
                                                           "169x12 -> 225x12", "169x24 -> 225x24"}
    assert len(report.taken) + len(report.resampled) + len(report.left_initial) == len(jax.tree.leaves(init))
    assert sorted(report.taken + report.resampled + report.skipped_source) == sorted(sd)
    _assert_fits_model(weights, config)
