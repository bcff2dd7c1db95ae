"""What every converter shares: the error type, the per-tensor report, reading torch files.

Each converter module (``torch_htsat``, ``ast``, ``swin_imagenet``, ...) maps a foreign checkpoint's
tensors to a model's Flax weights and fills one :class:`ConversionReport` saying what happened to
every source tensor (converted, verified against what this code computes, or dropped and why).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message names the file and the key."""


@dataclasses.dataclass
class ConversionReport:
    """What happened to every key of the source checkpoint."""

    source: str
    container: str = ""
    converted: list[str] = dataclasses.field(default_factory=list)
    verified: dict[str, str] = dataclasses.field(default_factory=dict)
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)
    inferred: dict[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"source: {self.source} ({self.container})",
                 f"converted: {len(self.converted)} tensors",
                 f"verified against this frontend/geometry: {len(self.verified)} tensors"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.verified.items()) if "relative_position_index" not in k
                  and "attn_mask" not in k]
        n_idx = sum("relative_position_index" in k for k in self.verified)
        n_mask = sum("attn_mask" in k for k in self.verified)
        if n_idx or n_mask:
            lines.append(f"  {n_idx} relative_position_index and {n_mask} attn_mask buffers equal the recomputed ones")
        lines.append(f"dropped: {len(self.dropped)} tensors")
        lines += [f"  {k}: {v}" for k, v in sorted(self.dropped.items())]
        lines.append("inferred: " + ", ".join(f"{k}={v}" for k, v in self.inferred.items()))
        return "\n".join(lines)


def read_torch_file(path: str, *, unsafe: bool = False) -> Any:
    """``torch.load`` on CPU with a clear error when torch is missing or the file is not a checkpoint.

    The last file read is kept (keyed by path, size and modification time), so detecting which
    model a file holds and converting it read the file once.
    """
    try:
        import torch  # noqa: F401
    except ImportError as e:  # torch is an optional extra
        raise CheckpointError(
            f"reading {path} needs PyTorch: pip install 'htsat-jax[torch]' (or pip install torch)"
        ) from e
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    st = os.stat(path)
    return _read_torch_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns, unsafe)


@functools.lru_cache(maxsize=1)
def _read_torch_cached(path: str, size: int, mtime_ns: int, unsafe: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as e:  # noqa: BLE001 - torch raises many types; re-raise with the file named
        hint = ("" if unsafe else " If you trust this file and it holds Python objects beyond tensors, "
                "retry with unsafe=True (CLI: --unsafe_load).")
        raise CheckpointError(f"could not read {path} as a PyTorch checkpoint: {type(e).__name__}: {e}.{hint}") from e


def to_numpy(value: Any, key: str, path: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise CheckpointError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")


def normalise_keys(tree: Any) -> Any:
    """orbax/JSON may turn integer list indices of a weight tree into strings; map them back."""
    if isinstance(tree, Mapping):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): normalise_keys(v) for k, v in tree.items()}
    return tree
