"""APPS (Hendrycks et al.) from parquet/JSONL mirrors or the hub.

Row fields: `problem_id`, `question`, `solutions` (JSON list of programs), `input_output` (JSON with
`inputs`, `outputs` and, for call-based problems, `fn_name`), `starter_code`, `difficulty`
(introductory / interview / competition).

Tests: with `fn_name`, a sandbox `call` test (APPS wraps each expected return value in a one-element
list; it is unwrapped, as APPS's own checker accepts); otherwise a `stdio` test. Inputs/outputs
given as lists of lines are joined with newlines. Rows whose `input_output` is empty have nothing to
evaluate: they are skipped and counted in the log.

Public test: the examples of the statement (`public.statement_stdio_examples`, or
`public.statement_call_examples` for call-based problems); without any, the first hidden case
(`metadata["public_source"]` says which: "statement" or "first_test").

Prompt (the APPS paper's format): "\\nQUESTION:\\n<question>\\n<starter code>\\n\\nUse Standard Input
format|Use Call-Based format\\nANSWER:\\n". The prompt is prose, so the program is the completion alone
(`program_prefix=""`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from ieta_jax.data import public
from ieta_jax.data.rows import RowError, convert_rows, hub_rows, read_rows, require
from ieta_jax.data.task import Task

HUB_ID = "codeparrot/apps"
DIFFICULTIES = ("introductory", "interview", "competition")
SPLITS = ("train", "test")
STOP_SEQUENCES = ("\nQUESTION:",)


def format_prompt(question: str, starter_code: str, call_based: bool) -> str:
    prompt = "\nQUESTION:\n" + question + "\n" + (starter_code or "") + "\n"
    prompt += "\nUse Call-Based format" if call_based else "\nUse Standard Input format"
    return prompt + "\nANSWER:\n"


def _text(value: Any, where: str, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return "\n".join(str(v) for v in value) + "\n"
    raise RowError(f"{where}: stdio {what} must be a string or a list of lines, got {type(value).__name__}")


def _unwrap(expected: Any) -> Any:
    return expected[0] if isinstance(expected, list) and len(expected) == 1 else expected


def _json_field(row, where, key, default):
    value = row.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise RowError(f"{where}: field {key!r} is not valid JSON: {e}") from None
    return value


def task_from_row(row: dict[str, Any], where: str) -> Task | None:
    problem_id = row.get("problem_id", row.get("id"))
    if problem_id is None:
        raise RowError(f"{where}: missing field 'problem_id'")
    where = f"{where} (problem_id {problem_id})"
    question = require(row, where, "question")
    io = _json_field(row, where, "input_output", None)
    if io is None:
        return None  # no tests: skipped and counted
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(
            io.get("outputs"), list):
        raise RowError(f"{where}: 'input_output' must hold lists 'inputs' and 'outputs'")
    inputs, outputs = io["inputs"], io["outputs"]
    if len(inputs) != len(outputs):
        raise RowError(f"{where}: {len(inputs)} inputs but {len(outputs)} outputs")
    if not inputs:
        return None
    fn_name = io.get("fn_name")
    if fn_name is not None and not isinstance(fn_name, str):
        raise RowError(f"{where}: 'fn_name' must be a string, got {type(fn_name).__name__}")
    if fn_name:
        cases = []
        for i, (args, expected) in enumerate(zip(inputs, outputs)):
            if not isinstance(args, list):
                raise RowError(f"{where}: call-based input {i} must be a list of arguments")
            cases.append({"args": args, "expected": _unwrap(expected)})
        test = {"kind": "call", "fn_name": fn_name, "cases": cases}
        shown = public.statement_call_examples(question)
    else:
        test = {"kind": "stdio", "cases": [{"input": _text(x, where, f"input {i}"),
                                            "output": _text(y, where, f"output {i}")}
                                           for i, (x, y) in enumerate(zip(inputs, outputs))]}
        shown = [{"input": x, "output": y} for x, y in public.statement_stdio_examples(question)]
    public_test = {**test, "cases": shown or test["cases"][:1]}
    solutions = _json_field(row, where, "solutions", [])
    if not isinstance(solutions, list):
        raise RowError(f"{where}: 'solutions' must be a JSON list of programs")
    starter = row.get("starter_code") or ""
    difficulty = row.get("difficulty")
    return Task(task_id=f"apps/{problem_id}", prompt=format_prompt(question, starter, bool(fn_name)),
                test=test, entry_point=fn_name or None,
                reference=next((s for s in solutions if isinstance(s, str) and s.strip()), None),
                program_prefix="", stop=STOP_SEQUENCES,
                metadata={"dataset": "apps", "difficulty": difficulty, "starter_code": starter,
                          "split": row.get("split"), "num_solutions": len(solutions),
                          "public_source": "statement" if shown else "first_test"},
                public_test=public_test)


def load(split: str | None = None, limit: int | None = None, *, path: str | os.PathLike | None = None,
         difficulty: str | Sequence[str] | None = None, hub_id: str = HUB_ID,
         on_error: str = "raise") -> list[Task]:
    """APPS tasks from a local parquet/JSONL/JSON file (`path`) or a hub mirror (`hub_id`, `split`).

    difficulty: keep only these difficulties (one name or a list of DIFFICULTIES).
    """
    if difficulty is not None:
        wanted = {difficulty} if isinstance(difficulty, str) else set(difficulty)
        unknown = wanted - set(DIFFICULTIES)
        if unknown:
            raise ValueError(f"unknown APPS difficulty {sorted(unknown)}; expected {DIFFICULTIES}")
    if path is not None:
        if split is not None:
            raise ValueError(f"a local APPS file holds one split; got split={split!r} with path={path}")
        rows, name = read_rows(path), os.fspath(path)
    else:
        if split not in SPLITS:
            raise ValueError(f"loading APPS from the hub needs split in {SPLITS}, got {split!r}")
        rows, name = hub_rows(hub_id, None, split), hub_id
    keep = None if difficulty is None else (lambda t: t.metadata["difficulty"] in wanted)
    return convert_rows(rows, task_from_row, source=name, on_error=on_error, keep=keep, limit=limit)
