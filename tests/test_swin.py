"""Structural facts of the Swin parts and the spectrogram-to-image mapping (HTSAT_SPEC §2-3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from htsat_jax.models import swin
from htsat_jax.models.htsat import HTSAT, HTSATConfig, TINY, bicubic_matrix, stretch_time, to_image


def test_relative_position_index_formula():
    idx = swin.relative_position_index(8)
    assert idx.shape == (64, 64) and idx.min() == 0 and idx.max() == 224
    for i, j in [(0, 0), (0, 63), (9, 54), (63, 0), (17, 42)]:
        (hi, wi), (hj, wj) = divmod(i, 8), divmod(j, 8)
        assert idx[i, j] == (hi - hj + 7) * 15 + (wi - wj + 7)


@pytest.mark.parametrize("res,n_windows", [(64, 64), (32, 16), (16, 4)])
def test_shifted_window_masks(res, n_windows):
    mask = swin.shifted_window_mask(res, res, 8, 4)
    assert mask.shape == (n_windows, 64, 64)
    assert set(np.unique(mask)) == {-100.0, 0.0}
    # Interior windows see no wrapped-around tokens; the bottom-right window sees 4 regions.
    assert np.all(mask[0] == 0)
    assert len({tuple(r) for r in (mask[-1] == 0).astype(int)}) == 4


def test_last_stage_never_shifts_and_covers_the_map():
    assert swin.effective_window_and_shift((8, 8), 8, 4) == (8, 0)
    assert swin.effective_window_and_shift((16, 16), 8, 4) == (8, 4)
    model = nnx.eval_shape(lambda: HTSAT(HTSATConfig(num_classes=3, **TINY), rngs=nnx.Rngs(0)))
    shifts = [[b.shift for b in layer.blocks] for layer in model.layers]
    assert shifts == [[0, 4], [0, 4], [0, 4], [0]]


def test_window_partition_round_trip_and_order():
    x = jnp.arange(2 * 16 * 16 * 3, dtype=jnp.float32).reshape(2, 16, 16, 3)
    w = swin.window_partition(x, 8)
    assert w.shape == (2, 4, 64, 3)
    np.testing.assert_array_equal(w[0, 1, 0], x[0, 0, 8])  # window 1 = top-right, first token
    np.testing.assert_array_equal(w[1, 2, 9], x[1, 9, 1])  # window 2 = bottom-left, row 1 col 1
    np.testing.assert_array_equal(swin.window_reverse(w, 8, 16, 16), x)


def test_patch_merging_concatenation_order():
    merge = swin.PatchMerging(1, rngs=nnx.Rngs(0))
    x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
    captured = {}
    norm = merge.norm
    merge.norm = lambda v: captured.setdefault("v", v)  # capture the concatenation itself
    merge(x)
    merge.norm = norm
    # [even row/even col, odd row/even col, even row/odd col, odd row/odd col]
    np.testing.assert_array_equal(captured["v"][0, 0, 0], [0, 4, 1, 5])
    np.testing.assert_array_equal(captured["v"][0, 1, 1], [10, 14, 11, 15])


def test_time_frequency_window_image_layout():
    spec = np.random.default_rng(0).normal(size=(2, 1024, 64)).astype(np.float32)
    img = np.asarray(to_image(jnp.asarray(spec), 4))
    assert img.shape == (2, 256, 256)
    for r, f, w in [(0, 0, 0), (1, 5, 17), (3, 63, 255), (2, 31, 128)]:
        assert img[1, r * 64 + f, w] == spec[1, r * 256 + w, f]


def test_bicubic_stretch_matches_torch_align_corners():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).normal(size=(2, 1001, 64)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(1024, 64), mode="bicubic",
                                          align_corners=True)[:, 0].numpy()
    np.testing.assert_allclose(np.asarray(stretch_time(jnp.asarray(x), 1024)), ref, atol=2e-5)
    # Rows sum to one (a resampler), and 1024 -> 1024 is the identity.
    np.testing.assert_allclose(bicubic_matrix(101, 1024).sum(1), 1.0, atol=1e-5)
    assert stretch_time(jnp.asarray(x[:, :1024].repeat(2, 1)[:, :1024]), 1024).shape == (2, 1024, 64)


def test_drop_path_rates_follow_official_linspace():
    rates = HTSATConfig().drop_path_rates
    assert len(rates) == 12 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert rates[1] == pytest.approx(0.1 / 11)


def test_drop_path_is_per_sample_and_unbiased():
    x = jnp.ones((4000, 3))
    y = swin.drop_path(x, 0.25, jax.random.key(0))
    kept = np.asarray(y[:, 0] > 0)
    assert np.all(np.asarray(y)[kept] == pytest.approx(1 / 0.75))
    assert np.all(np.asarray(y)[~kept] == 0)
    assert abs(kept.mean() - 0.75) < 0.03
    assert swin.drop_path(x, 0.25, None) is x
