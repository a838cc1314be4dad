"""Reading dataset rows from local files or the Hugging Face hub, with errors that name the row."""
from __future__ import annotations

import gzip
import json
import logging
import os
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


class RowError(ValueError):
    """A dataset row that cannot be turned into a task; the message names the row."""


def read_rows(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, row) for a .jsonl[.gz], .json (a list of objects) or .parquet file.

    `where` names the row for error messages ("file.jsonl:12", "file.parquet row 3").
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file not found: {path}")
    name = path.lower()
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from e
        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {i}", row
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        if name.endswith(".json") or name.endswith(".json.gz"):
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise RowError(f"{path}: invalid JSON: {e}") from None
            if not isinstance(data, list):
                raise RowError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
            for i, row in enumerate(data):
                if not isinstance(row, dict):
                    raise RowError(f"{path} row {i}: expected an object, got {type(row).__name__}")
                yield f"{path} row {i}", row
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RowError(f"{path}:{lineno}: invalid JSON: {e}") from None
            if not isinstance(row, dict):
                raise RowError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield f"{path}:{lineno}", row


def first_row(path: str | os.PathLike) -> dict[str, Any]:
    for _, row in read_rows(path):
        return row
    raise RowError(f"{path}: no rows")


def hub_rows(hub_id: str, config: str | None, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a hub dataset through `datasets`; a clear error when the hub cannot be reached."""
    try:
        import datasets
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline, unknown id, no network: all end here
        raise RuntimeError(
            f"could not load {hub_id!r} (config {config!r}, split {split!r}) from the Hugging Face "
            f"hub: {type(e).__name__}: {e}. Without hub access pass a local JSONL/JSON/parquet file "
            "in the dataset's format instead.") from e
    for i, row in enumerate(ds):
        yield f"{hub_id}[{split}] row {i}", dict(row)


def require(row: dict[str, Any], where: str, key: str, types: type | tuple = str) -> Any:
    """row[key], checked for presence and type; RowError naming the row otherwise."""
    if key not in row or row[key] is None:
        raise RowError(f"{where}: missing field {key!r}")
    value = row[key]
    if not isinstance(value, types):
        tname = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise RowError(f"{where}: field {key!r} must be {tname}, got {type(value).__name__}")
    return value


def convert_rows(rows, convert: Callable, *, source: str, on_error: str = "raise",
                 keep: Callable | None = None, limit: int | None = None) -> list:
    """Apply `convert(row, where)` to each row.

    `convert` returns a task, or None for a well-formed row that has nothing to evaluate (skipped and
    counted). A RowError aborts (on_error="raise", the default) or is skipped and counted ("skip").
    `keep(task)` filters (split, difficulty); filtered rows are not "skipped".
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    tasks, skipped, bad = [], 0, 0
    if limit is not None and limit <= 0:
        return tasks
    for where, row in rows:
        try:
            task = convert(row, where)
        except RowError:
            if on_error == "raise":
                raise
            bad += 1
            log.warning("skipping malformed row", exc_info=True)
            continue
        if task is None:
            skipped += 1
            continue
        if keep is None or keep(task):
            tasks.append(task)
            if limit is not None and len(tasks) >= limit:
                break
    if skipped or bad:
        log.warning("%s: skipped %d row(s) without tests and %d malformed row(s)", source, skipped, bad)
    log.info("%s: loaded %d task(s)", source, len(tasks))
    return tasks
