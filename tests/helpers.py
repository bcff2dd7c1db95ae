"""Small helpers shared by the model tests."""

import functools

import numpy as np

from conftest import FIXTURES


@functools.lru_cache(maxsize=None)
def tiny_checkpoint():
    """(config, weights) of the official tiny fixture checkpoint, converted once per session."""
    from htsat_jax.convert import torch_htsat as convert

    return convert.load_torch_checkpoint(str(FIXTURES / "tiny" / "htsat_tiny.ckpt"))


@functools.lru_cache(maxsize=None)
def inputs():
    return dict(np.load(FIXTURES / "inputs.npz"))


def to_official_layout(name: str, ours: np.ndarray, ref_shape) -> np.ndarray:
    """Our (B, H, W, C)-style intermediates -> the official (B, tokens, C) / NCHW layouts."""
    a = np.asarray(ours)
    if name == "tscam_conv_in":  # (B, 2, 32, C) -> (B, C, 2, 32)
        a = a.transpose(0, 3, 1, 2)
    elif name == "tscam_conv_out":  # (B, 32, classes) -> (B, classes, 1, 32)
        a = a.transpose(0, 2, 1)[:, :, None]
    return a.reshape(ref_shape)


def run(model, x, *, capture: bool = False, **kwargs):
    """Jitted eval forward (eager op-by-op dispatch is several times slower on CPU).

    Returns the outputs dict, merged with the captured intermediates when ``capture``.
    """
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)

    def fwd(state, x):
        cap = {} if capture else None
        out = nnx.merge(graphdef, state)(x, capture=cap, **kwargs)
        return {**(cap or {}), **out}

    return jax.jit(fwd)(state, x)
