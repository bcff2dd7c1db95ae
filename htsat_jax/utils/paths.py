"""Paths that may be local (``~/runs/x``) or remote (``gs://bucket/runs/x``), through ``etils.epath``.

Everything the trainer, the evaluator and the tools read or write (work directories, data_dir,
init_from, metrics, configs, plots) goes through here, so a ``gs://`` WORKDIR or data_dir works on
a Cloud TPU VM without gcsfuse. Local paths are expanded (``~``) and made absolute.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def path(p: str | os.PathLike) -> epath.Path:
    """An ``epath.Path`` (local paths expanded and absolute)."""
    p = os.fspath(p)
    return epath.Path(p) if is_remote(p) else epath.Path(os.path.abspath(os.path.expanduser(p)))


def local_or_remote(p: str | os.PathLike) -> str:
    """The path as a string the rest of the stack takes (TFDS, orbax and grain read both kinds)."""
    return os.fspath(path(p))


def join(*parts: str | os.PathLike) -> str:
    return os.fspath(path(parts[0]).joinpath(*[os.fspath(x) for x in parts[1:]]))


def makedirs(p: str | os.PathLike) -> str:
    out = path(p)
    out.mkdir(parents=True, exist_ok=True)
    return os.fspath(out)


def exists(p: str | os.PathLike) -> bool:
    return path(p).exists()


def isdir(p: str | os.PathLike) -> bool:
    return path(p).is_dir()


def isfile(p: str | os.PathLike) -> bool:
    q = path(p)
    return q.exists() and not q.is_dir()


def write_text(p: str | os.PathLike, text: str) -> None:
    path(p).write_text(text)


def read_json(p: str | os.PathLike) -> Any:
    return json.loads(path(p).read_text())


def write_json(p: str | os.PathLike, value: Any) -> None:
    path(p).write_text(json.dumps(value, indent=2))


def rmtree(p: str | os.PathLike) -> None:
    q = path(p)
    if q.exists():
        q.rmtree()
