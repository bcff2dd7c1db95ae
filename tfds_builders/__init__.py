"""TFDS builders for the datasets htsat-jax trains and evaluates on.

Each sub-package holds one `GeneratorBasedBuilder` and exposes the builder class,
`SAMPLE_RATE` and `CLASS_NAMES`. Importing a sub-package registers its dataset name with
TFDS, so `tfds.data_source(name, data_dir=...)` works afterwards.

    short name         package                          TFDS name            rate
    esc50              tfds_builders.esc50              esc50                32000
    speech_commands    tfds_builders.speech_commands    speech_commands_v2   16000
    audioset           tfds_builders.audioset           audioset             32000
    desed              tfds_builders.desed              desed                32000
    synthetic_events   tfds_builders.synthetic_events   (its own)            32000

`build(short_name, manual_dir=..., data_dir=...)` prepares one of them; tools/prepare_data.py
is its command-line front end. Sub-packages are imported lazily so that importing this
package stays cheap and a missing optional builder does not break the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

# Short name (CLI / config) -> sub-package. The builder class is found inside it.
DATASETS: dict[str, str] = {
    "esc50": "tfds_builders.esc50",
    "speech_commands": "tfds_builders.speech_commands",
    "audioset": "tfds_builders.audioset",
    "desed": "tfds_builders.desed",
    "synthetic_events": "tfds_builders.synthetic_events",
    "fsd50k": "tfds_builders.fsd50k",
    "audio_folder": "tfds_builders.audio_folder",
}


def load_module(short_name: str) -> types.ModuleType:
    """Imports the builder package of `short_name` (registering its TFDS name).

    Raises:
      KeyError: unknown short name.
      ModuleNotFoundError: the package is not installed in this checkout.
    """
    if short_name not in DATASETS:
        raise KeyError(f"unknown dataset {short_name!r}; known: {sorted(DATASETS)}")
    return importlib.import_module(DATASETS[short_name])


def available() -> list[str]:
    """Short names whose builder package exists in this checkout."""
    return [name for name, module in DATASETS.items() if importlib.util.find_spec(module) is not None]


def builder_class(short_name: str) -> type:
    """The GeneratorBasedBuilder subclass of `short_name`."""
    import tensorflow_datasets as tfds

    module = load_module(short_name)
    classes = [
        v for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, tfds.core.GeneratorBasedBuilder)
    ]
    if len(classes) != 1:
        raise RuntimeError(f"{module.__name__} should expose exactly one builder class, found {classes}")
    return classes[0]


def build(
    short_name: str,
    *,
    data_dir: os.PathLike | str,
    manual_dir: os.PathLike | str | None = None,
    overwrite: bool = False,
    **builder_kwargs: Any,
) -> "tfds.core.DatasetBuilder":
    """Builds dataset `short_name` into `data_dir` (ArrayRecord files) and returns the builder.

    Args:
      short_name: a key of DATASETS.
      data_dir: output root; files go to `{data_dir}/{tfds name}/{version}/`.
      manual_dir: folder with the raw files; None lets ESC-50 / Speech Commands download.
      overwrite: rebuild even if this version already exists in data_dir (else it is reused).
      **builder_kwargs: extra constructor arguments. A builder package may define
        `builder_kwargs(manual_dir) -> dict` to derive them from the raw folder (AudioSet reads
        its class count from class_labels_indices.csv); explicit ones win.
    """
    import tensorflow_datasets as tfds

    cls = builder_class(short_name)
    derive = getattr(load_module(short_name), "builder_kwargs", None)
    if derive is not None:
        builder_kwargs = {**derive(manual_dir), **builder_kwargs}
    builder = cls(data_dir=os.fspath(data_dir), file_format="array_record", **builder_kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir) if manual_dir is not None else None,
            try_download_gcs=False,  # our datasets are not on TFDS's bucket; avoid the network probe
            download_mode=(
                tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
                if overwrite
                else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
            ),
        )
    )
    return builder
