"""The data an experiment config names: where it is, its recipe policy, its splits and class names.

Shared by the trainer, the evaluator, averaging and the ensemble tool, so every one of them opens
the data of a config the same way. Dataset facts (the stored rate, the class count and names,
strong labels) come from the prepared dataset's own metadata; the recipe's policy (clip length,
length policy, balanced sampling) comes from the config.
"""

from __future__ import annotations

import logging
from typing import Any

import ml_collections

from htsat_jax.data import pipeline
from htsat_jax.utils import paths

logger = logging.getLogger("htsat_jax")


def data_kwargs(config: ml_collections.ConfigDict, *, train: bool = False) -> dict[str, Any]:
    """The pipeline arguments of ``config``'s dataset and data policy (any stored rate); evaluation
    clips are ``eval_clip_seconds`` long when the recipe sets it (e.g. whole clips, cut in chunks)."""
    seconds = config.clip_seconds if train else (config.eval_clip_seconds or config.clip_seconds)
    return dict(dataset=config.dataset, data_dir=paths.local_or_remote(config.data_dir),
                builder_config=config.builder_config or None,
                clip_seconds=seconds, length_policy=config.length_policy)


def folds(config: ml_collections.ConfigDict, which: str) -> tuple[int, ...] | None:
    """``config.train_folds`` / ``config.eval_folds`` as a tuple, None for "all"."""
    value = config[f"{which}_folds"]
    return tuple(int(f) for f in value) if value else None


def open_split(config: ml_collections.ConfigDict, split: str):
    """``(source, spec)`` of one split for evaluation (the spec at the stored rate, with the recipe's policy)."""
    return pipeline.open_source(**data_kwargs(config), split=split)


def make_eval_data(config: ml_collections.ConfigDict, split: str, *, max_events: int = 0) -> pipeline.EvalData:
    """Deterministic, padded eval batches of ``split`` (``config.eval_folds`` applied)."""
    return pipeline.make_eval_data(
        **data_kwargs(config), split=split, global_batch_size=config.eval_batch_size,
        folds=folds(config, "eval"), num_threads=config.num_threads, max_events=max_events)


def class_names(config: ml_collections.ConfigDict) -> list[str] | None:
    """``config.class_names`` if set, else the prepared dataset's (label feature or metadata)."""
    if config.class_names:
        return list(config.class_names)
    try:
        source, _ = open_split(config, config.eval_split)
    except Exception:  # noqa: BLE001 - names are cosmetic; the pipeline reports real errors
        return None
    features = source.dataset_info.features
    if "label" in features and hasattr(features["label"], "names"):
        return list(features["label"].names)
    names = (source.dataset_info.metadata or {}).get("class_names")
    return list(names) if names else None


def resolve_paths(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """A copy with ``data_dir=""`` resolved to ``WORKDIR/data``."""
    config = ml_collections.ConfigDict(config.to_dict())
    if not config.data_dir:
        config.data_dir = paths.join(workdir, "data")
    return config


def maybe_prepare_synthetic(config: ml_collections.ConfigDict) -> None:
    """Generate the synthetic_events dataset into ``data_dir`` when asked and missing (process 0)."""
    import jax
    from jax.experimental import multihost_utils

    if not (config.prepare_synthetic_data and config.dataset == "synthetic_events"):
        return
    if jax.process_index() == 0:
        try:
            open_split(config, config.train_split)
        except (FileNotFoundError, ValueError):
            from htsat_jax.data import synthetic_dataset
            logger.info("generating synthetic_events/%s into %s", config.builder_config or "default",
                        config.data_dir)
            synthetic_dataset.build(paths.local_or_remote(config.data_dir), config.builder_config or None)
    multihost_utils.sync_global_devices("synthetic data ready")
