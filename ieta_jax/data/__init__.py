"""Tasks for ieta-jax: HumanEval, MBPP, APPS, the synthetic suite, and completion handling.

    from ieta_jax import data
    tasks = data.load_tasks("synthetic", split="train")
    program = data.build_program(tasks[0], completion)
    request = data.to_request(tasks[0], completion, request_id="t0/s0")   # for sandbox.Executor
    feedback_request = data.to_request(tasks[0], completion, "t0/s0/public", public=True, trace=True)

No JAX here: this package runs on CPU-only hosts next to the sandbox fleet.
"""
from __future__ import annotations

import os
from typing import Any

from ieta_jax.data import apps, humaneval, mbpp, public, synthetic
from ieta_jax.data.completions import (CHAT_INSTRUCTION, completion_from_sample, extract_fenced_code,
                                       format_prompt, has_chat_template, truncate_at_stop)
from ieta_jax.data.rows import RowError, convert_rows, first_row, read_rows
from ieta_jax.data.task import STOP_SEQUENCES, Task, build_program, to_request

DATASETS = ("synthetic", "humaneval", "mbpp", "apps")
_ALIASES = {"openai/openai_humaneval": "humaneval", "openai_humaneval": "humaneval",
            "google-research-datasets/mbpp": "mbpp", "mbpp_sanitized": "mbpp",
            "codeparrot/apps": "apps"}

__all__ = ["DATASETS", "STOP_SEQUENCES", "CHAT_INSTRUCTION", "RowError", "Task", "apps",
           "build_program", "completion_from_sample", "detect_format", "extract_fenced_code",
           "format_prompt", "has_chat_template", "humaneval", "load_tasks", "mbpp", "public", "synthetic",
           "to_request", "truncate_at_stop"]


def detect_format(row: dict[str, Any]) -> str:
    """Which loader a local file's rows belong to, from the fields of its first row."""
    if isinstance(row.get("test"), dict) and "task_id" in row and "prompt" in row:
        return "tasks"
    if {"prompt", "canonical_solution", "test", "entry_point"} <= set(row):
        return "humaneval"
    if "test_list" in row and "code" in row:
        return "mbpp"
    if "question" in row and "input_output" in row:
        return "apps"
    raise RowError(f"unrecognised dataset format: fields {sorted(row)} match none of HumanEval "
                   "(prompt, canonical_solution, test, entry_point), MBPP (text|prompt, code, test_list), "
                   "APPS (question, input_output, ...) or saved tasks (task_id, prompt, test)")


def _task_row(row: dict[str, Any], where: str) -> Task:
    try:
        return Task.from_dict(row)
    except (TypeError, ValueError) as e:
        raise RowError(f"{where}: not a valid task: {e}") from None


def load_tasks(name: str | os.PathLike, split: str | None = None, limit: int | None = None,
               **kwargs: Any) -> list[Task]:
    """Tasks of a dataset by name ("synthetic", "humaneval", "mbpp", "apps", or a hub id), or a local
    file (JSONL/JSON/parquet) in HumanEval, MBPP, APPS or saved-task format.

    Extra keyword arguments go to the loader: synthetic.make_tasks (seed, heldout_fraction,
    tasks_per_family, families, heldout_families, param_style), humaneval.load (source), mbpp.load
    (config; "mbpp_sanitized" sets config="sanitized"), apps.load (difficulty, hub_id); all file/hub
    loaders take on_error.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    key = os.fspath(name)
    if os.path.exists(key):
        fmt = detect_format(first_row(key))
        if fmt == "tasks":
            return convert_rows(read_rows(key), _task_row, source=key,
                                keep=None if split is None else (lambda t: t.metadata.get("split") == split),
                                limit=limit, **kwargs)
        return {"humaneval": humaneval.load, "mbpp": mbpp.load, "apps": apps.load}[fmt](
            split, limit, path=key, **kwargs)
    if key == "mbpp_sanitized":
        kwargs.setdefault("config", "sanitized")
    dataset = _ALIASES.get(key, key)
    if dataset == "synthetic":
        return synthetic.make_tasks(split, limit=limit, **kwargs)
    if dataset == "humaneval":
        return humaneval.load(split, limit, **kwargs)
    if dataset == "mbpp":
        return mbpp.load(split, limit, **kwargs)
    if dataset == "apps":
        if key != "apps":
            kwargs.setdefault("hub_id", key)
        return apps.load(split, limit, **kwargs)
    raise ValueError(f"unknown dataset {key!r}: expected one of {DATASETS}, a hub id "
                     f"({', '.join(_ALIASES)}), or an existing local file")
