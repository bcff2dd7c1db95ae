"""Where training numbers go: a JSON-lines file, TensorBoard, and the console.

Only process 0 writes; every process may call the methods. A ``gs://`` work directory gets the
same ``metrics.jsonl`` (objects cannot be appended to, so the file is rewritten on each write).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping

import jax
import numpy as np

from htsat_jax.utils import paths

logger = logging.getLogger("htsat_jax")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        value = np.asarray(value)
        return value.item() if value.ndim == 0 else value.tolist()
    return value


class MetricWriter:
    """``write(step, {"train/loss": 0.3, ...})`` to ``WORKDIR/metrics.jsonl`` and TensorBoard."""

    def __init__(self, workdir: str, *, tensorboard: bool = True):
        self._active = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        self._remote_rows: list[str] | None = None
        if not self._active:
            return
        paths.makedirs(workdir)
        self._path = paths.join(workdir, METRICS_FILE)
        if paths.is_remote(workdir):
            self._remote_rows = paths.path(self._path).read_text().splitlines() if paths.exists(self._path) else []
        else:
            self._jsonl = open(self._path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional: the JSON-lines file is always written
                logger.warning("tensorboardX is not installed; TensorBoard logging is off")
            else:
                self._tb = SummaryWriter(paths.join(workdir, TENSORBOARD_DIR))

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not self._active:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
        if self._remote_rows is not None:
            self._remote_rows.append(json.dumps(row))
            paths.write_text(self._path, "\n".join(self._remote_rows) + "\n")
        else:
            self._jsonl.write(json.dumps(row) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and np.isfinite(value):
                    self._tb.add_scalar(key, value, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
