"""Pieces of the model contract (``htsat_jax.models``) that most models share.

A model module can take these as they are (``can_load = base.no_foreign_files``...) or write its
own; nothing here knows any particular model.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import numpy as np
from flax import traverse_util

from htsat_jax.convert.common import normalise_keys


@dataclasses.dataclass
class InitReport:
    """What ``init_from`` did: tensors taken from the source and tensors left at their fresh values."""

    source: str
    loaded: list[str]
    reinitialised: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        fresh = self.reinitialised
        out = (f"initialised from {self.source}: {len(self.loaded)} tensors loaded, {len(fresh)} left at their "
               f"initial values" + (f" ({', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''})" if fresh else ""))
        return out + "".join(f"; {n}" for n in self.notes)


def merge_weights(fresh: Mapping, loaded: Mapping, *, source: str,
                  keep_fresh: Sequence[str] = ()) -> tuple[dict, InitReport]:
    """Copy every tensor of ``loaded`` into the structure of ``fresh``.

    Args:
      fresh: the freshly initialised model's pure dict (``nnx.to_pure_dict(nnx.state(model))``).
      loaded: a pure dict of the same model (e.g. a model directory's weights).
      source: named in errors and the report.
      keep_fresh: top-level entries (e.g. the classifier head) that keep their fresh values.

    Raises:
      ValueError: a tensor is missing in ``loaded`` or has another shape (names it and both shapes).
    """
    flat_fresh = traverse_util.flatten_dict(normalise_keys(dict(fresh)))
    flat_loaded = traverse_util.flatten_dict(normalise_keys(dict(loaded)))
    out, taken, kept = {}, [], []
    for key, value in flat_fresh.items():
        name = "/".join(map(str, key))
        if key[0] in keep_fresh:
            out[key] = value
            kept.append(name)
            continue
        if key not in flat_loaded:
            raise ValueError(f"init_from={source}: tensor {name} missing")
        got = np.asarray(flat_loaded[key])
        if got.shape != tuple(np.shape(value)):
            raise ValueError(f"init_from={source}: {name} has shape {got.shape}, the model expects "
                             f"{tuple(np.shape(value))}")
        out[key] = got.astype(np.asarray(value).dtype)
        taken.append(name)
    return traverse_util.unflatten_dict(out), InitReport(source, taken, kept)


def init_from_model_dir(path: str, config: Any, fresh: Mapping, *, arch_fields: Sequence[str],
                        head: Sequence[str]) -> tuple[dict, InitReport]:
    """``init_from`` a model directory of the same model: every tensor, the head fresh when the class
    count differs. The architecture fields ``arch_fields`` must agree."""
    from htsat_jax import checkpoint as ckpt_lib

    src_cfg, loaded, _ = ckpt_lib.load_weights(path)
    if type(src_cfg) is not type(config):
        raise ValueError(f"init_from={path} holds a {type(src_cfg).__name__}; the config asks for a "
                         f"{type(config).__name__}")
    return merge_same_architecture(fresh, src_cfg, config, loaded, source=path, arch_fields=arch_fields, head=head)


def merge_same_architecture(fresh: Mapping, src_cfg: Any, config: Any, loaded: Mapping, *, source: str,
                            arch_fields: Sequence[str], head: Sequence[str]) -> tuple[dict, InitReport]:
    """:func:`merge_weights` after checking that ``arch_fields`` agree (the error names each field);
    the ``head`` entries stay fresh when the class counts differ."""
    diffs = [f"{f}: checkpoint {getattr(src_cfg, f)} vs config {getattr(config, f)}"
             for f in arch_fields if getattr(src_cfg, f) != getattr(config, f)]
    if diffs:
        raise ValueError(f"init_from={source} does not match config.model: " + "; ".join(diffs))
    keep = tuple(head) if src_cfg.num_classes != config.num_classes else ()
    return merge_weights(fresh, loaded, source=source, keep_fresh=keep)


def no_foreign_files(path: str) -> bool:
    """``can_load`` of a model without released files of its own (only model directories)."""
    return False


def load_unsupported(path: str, **kwargs) -> tuple:
    raise ValueError(f"{path}: this model loads only from model directories")


def is_model_dir(path: str) -> bool:
    from htsat_jax import checkpoint as ckpt_lib

    return ckpt_lib.is_model_dir(os.fspath(path))
