"""Files of a run, written atomically: the one place for atomic writes and "read it if it exists, else compute it".

Every output goes to a temporary sibling and is renamed into place (``os.replace``), so a reader, or a run
restarted after ``kill -9``, sees the old file or the new one, never half of one. A target that exists and is not a
regular file (``/dev/null``, a FIFO) is written into instead: replacing it would destroy the device. ``atomic_write`` and
``replace_dir`` are plain file helpers (no JAX) for any CLI; :class:`Workdir` adds the multi-process rule of the
experiment: process 0 alone writes, and what it reads is what every process gets (``distributed.on_primary``),
so resume decisions are the same everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

import numpy as np


def json_default(x):
    """numpy scalars/arrays and dataclasses as JSON (the one encoder of workdir files and broadcasts)."""
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import (os.umask can only be read by setting it)


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "w") -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, then rename it over ``path``. The temporary name
    is unique (mkstemp), so threads writing the same path at once never share a temporary file. An existing
    ``path`` that is not a regular file (a device, a FIFO) is opened and written, never replaced; a write error
    (ENOSPC on ``/dev/full``) is raised as OSError."""
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, mode) as f:
            write(f)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # the mode open() would give (mkstemp makes 0600)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj: Any) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, default=json_default))


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    atomic_write(path, lambda f: f.writelines(json.dumps(r, default=json_default) + "\n" for r in rows))


def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


class CorruptFileError(ValueError):
    """A file that exists but does not parse (truncated, edited, not UTF-8); the message names it."""


def _parse(path: str, load: Callable[[Any], Any]) -> Any | None:
    """``load(f)`` of the open file, None when it does not exist, CorruptFileError when it does not parse."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return load(f)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptFileError(f"{path} is corrupt ({e})") from None


def read_json(path: str) -> Any | None:
    """The parsed file, or None when it does not exist."""
    return _parse(path, json.load)


def read_jsonl(path: str) -> list[dict] | None:
    return _parse(path, lambda f: [json.loads(line) for line in f if line.strip()])


def _read_stage(read: Callable[[str], Any], path: str) -> Any | None:
    """``read(path)`` of a stage output; a corrupt one says how to recover (the run recomputes a missing stage)."""
    try:
        return read(path)
    except CorruptFileError as e:
        raise CorruptFileError(f"{e}; delete it to recompute that stage") from None


def replace_dir(tmp: str, out: str) -> None:
    """Put the finished directory ``tmp`` in place of ``out`` (a reader never sees a half-written ``out``)."""
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)


class Workdir:
    """The experiment's directory. Writes happen on process 0 only; reads return process 0's view everywhere."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def write_json(self, rel: str, obj: Any) -> None:
        from ieta_jax import distributed

        if distributed.is_primary():
            write_json(self.path(rel), obj)

    def write_jsonl(self, rel: str, rows: Sequence[dict]) -> None:
        from ieta_jax import distributed

        if distributed.is_primary():
            write_jsonl(self.path(rel), rows)

    def read_json(self, rel: str) -> Any | None:
        from ieta_jax import distributed

        return distributed.on_primary(lambda: _read_stage(read_json, self.path(rel)))

    def read_jsonl(self, rel: str) -> list[dict] | None:
        from ieta_jax import distributed

        return distributed.on_primary(lambda: _read_stage(read_jsonl, self.path(rel)))

    def cached_json(self, rel: str, compute: Callable[[], Any]) -> Any:
        """The stage output stored at ``rel`` if a previous run finished it, else ``compute()``, stored."""
        value = self.read_json(rel)
        if value is None:
            value = compute()
            self.write_json(rel, value)
        return value
