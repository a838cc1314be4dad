"""MBPP (`google-research-datasets/mbpp`, configs `full` and `sanitized`) or local files in its format.

Standard prompt (as in the MBPP paper's few-shot-free evaluations and bigcode-evaluation-harness):
the task description and the first test inside a docstring; the model writes the whole function:

    \"\"\"
    Write a function to find the shared elements from the given two lists.
    assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))
    \"\"\"

The hidden test is every assert of `test_list` (`asserts` kind, setup = `test_setup_code` for
`full`, the `test_imports` for `sanitized`); the public test is the one shown in the prompt (the
first), with the same setup. Windows line endings in the release are normalised.
Splits follow the release's task-id ranges: prompt 1-10, test 11-510, validation 511-600,
train 601-974.
"""
from __future__ import annotations

import os
import re
from typing import Any

from ieta_jax.data import public
from ieta_jax.data.rows import RowError, convert_rows, hub_rows, read_rows, require
from ieta_jax.data.task import Task

HUB_ID = "google-research-datasets/mbpp"
CONFIGS = ("full", "sanitized")
SPLIT_RANGES = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
# A completion is a whole function: stop when the model starts tests, a new prompt or a script part.
STOP_SEQUENCES = ("\nclass ", "\nassert ", '\n"""', "\nprint(", "\nif __name__")


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def format_prompt(description: str, first_test: str) -> str:
    return f'"""\n{description.strip()}\n{first_test.strip()}\n"""\n'


def _entry_point(code: str, first_test: str, where: str) -> str:
    defined = re.findall(r"^def\s+(\w+)\s*\(", code, flags=re.MULTILINE)
    called = re.findall(r"(\w+)\s*\(", first_test)
    for name in called:
        if name in defined:
            return name
    if defined:
        return defined[0]
    for name in called:
        if name not in ("assert", "set", "math", "isclose", "sorted", "abs", "round", "list", "tuple"):
            return name
    raise RowError(f"{where}: cannot find the function under test in the first test {first_test!r}")


def config_of(row: dict[str, Any]) -> str:
    """'full' or 'sanitized', from the row's fields."""
    if "text" in row:
        return "full"
    if "prompt" in row and "test_imports" in row:
        return "sanitized"
    raise RowError(f"not an MBPP row: fields {sorted(row)}")


def task_from_row(row: dict[str, Any], where: str) -> Task:
    try:
        config = config_of(row)
    except RowError as e:
        raise RowError(f"{where}: {e}") from None
    task_id = require(row, where, "task_id", int)
    where = f"{where} (task_id {task_id})"
    description = _lf(require(row, where, "text" if config == "full" else "prompt"))
    code = _lf(require(row, where, "code"))
    tests = require(row, where, "test_list", (list, tuple))
    if not tests or not all(isinstance(t, str) for t in tests):
        raise RowError(f"{where}: field 'test_list' must be a non-empty list of strings")
    tests = [_lf(t) for t in tests]
    if config == "full":
        setup = _lf(row.get("test_setup_code") or "")
    else:
        imports = require(row, where, "test_imports", (list, tuple))
        setup = "\n".join(_lf(i) for i in imports)
    entry_point = _entry_point(code, tests[0], where)
    return Task(task_id=f"mbpp/{task_id}", prompt=format_prompt(description, tests[0]),
                test={"kind": "asserts", "asserts": tests, "setup": setup},
                entry_point=entry_point, reference=code, stop=STOP_SEQUENCES,
                metadata={"dataset": "mbpp", "config": config, "mbpp_task_id": task_id,
                          "split": split_of(task_id)},
                public_test=public.asserts_test(tests[:1], setup))


def split_of(task_id: int) -> str | None:
    for name, (lo, hi) in SPLIT_RANGES.items():
        if lo <= task_id <= hi:
            return name
    return None


def load(split: str | None = None, limit: int | None = None, *, path: str | os.PathLike | None = None,
         config: str = "full", on_error: str = "raise") -> list[Task]:
    """MBPP tasks from a local file (`path`, either config, detected from the fields) or the hub."""
    if split is not None and split not in SPLIT_RANGES:
        raise ValueError(f"MBPP split must be one of {sorted(SPLIT_RANGES)} or None, got {split!r}")
    if config not in CONFIGS:
        raise ValueError(f"MBPP config must be one of {CONFIGS}, got {config!r}")
    if path is not None:
        rows, name = read_rows(path), os.fspath(path)
    else:
        if split is None:
            rows = (r for s in SPLIT_RANGES for r in hub_rows(HUB_ID, config, s))
        else:
            rows = hub_rows(HUB_ID, config, split)
        name = f"{HUB_ID} ({config})"
    keep = None if split is None else (lambda t: t.metadata["split"] == split)
    return convert_rows(rows, task_from_row, source=name, on_error=on_error, keep=keep, limit=limit)
