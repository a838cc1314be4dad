"""Request validation and the Result record shared by every backend.

A request is a plain dict (one JSONL line); `parse_request` checks it and fills defaults so the
worker never sees a malformed job. A `Result` carries exactly the fields of a result line.
"""
from __future__ import annotations

import dataclasses
from typing import Any

try:
    from .judge import compiled, humaneval_plan
except ImportError:  # loaded flat inside the sandbox
    from judge import compiled, humaneval_plan

STATUSES = ("passed", "failed", "error", "timeout", "memory", "syntax_error", "sandbox_error")
TEST_KINDS = ("humaneval", "asserts", "stdio", "call")
ISOLATIONS = ("gvisor", "process")

# stdout/stderr kept in a Result (characters each); the rest is dropped and "...[truncated]" appended.
OUTPUT_CAP_CHARS = 4096
# Total bytes a program may write to stdout+stderr (and per stdio case) before it is killed.
OUTPUT_LIMIT_BYTES = 1 << 20
MAX_TIMEOUT_S = 600.0
MAX_MEMORY_MB = 16384


class RequestError(ValueError):
    """A request dict that cannot run (bad field, unknown test kind)."""


@dataclasses.dataclass
class Result:
    """Verdict for one request; field names are the result-line keys of the JSONL CLI."""

    id: str
    status: str
    error_type: str | None = None
    error_message: str | None = None
    error_line: int | None = None
    tests_passed: int = 0
    tests_total: int = 0
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    isolation: str = "process"
    trace: dict | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _need(obj: dict, key: str, types, where: str):
    if key not in obj:
        raise RequestError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, types):
        tname = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise RequestError(f"{where}: field {key!r} must be {tname}, got {type(value).__name__}")
    return value


def _identifier(name: str, field: str, where: str) -> None:
    if not name.isidentifier():
        raise RequestError(f"{where}: field {field!r} must be a Python identifier, got {name[:60]!r}")


def _check_test(test: Any) -> dict:
    if not isinstance(test, dict):
        raise RequestError(f"field 'test' must be an object, got {type(test).__name__}")
    kind = test.get("kind")
    if kind not in TEST_KINDS:
        raise RequestError(f"unknown test kind {kind!r} (expected one of {', '.join(TEST_KINDS)})")
    where = f"test (kind {kind!r})"
    if kind == "humaneval":
        src = _need(test, "test", str, where)
        _identifier(_need(test, "entry_point", str, where), "entry_point", where)
        try:
            humaneval_plan(src)
        except SyntaxError as e:
            raise RequestError(f"{where}: the test does not compile: {e.msg} (line {e.lineno})") from None
        except ValueError as e:
            raise RequestError(f"{where}: {e}") from None
    elif kind == "asserts":
        asserts = _need(test, "asserts", list, where)
        if not asserts:
            raise RequestError(f"{where}: no tests: 'asserts' is empty")
        if not all(isinstance(a, str) for a in asserts):
            raise RequestError(f"{where}: every entry of 'asserts' must be a string")
        if not isinstance(test.get("setup", ""), str):
            raise RequestError(f"{where}: field 'setup' must be a string")
        test = {**test, "setup": test.get("setup") or ""}
        # test code that does not compile is the request's error, never a verdict charged to the program
        for label, src in [("setup", test["setup"])] + [(f"assert {i}", a) for i, a in enumerate(asserts)]:
            try:
                compiled(src)
            except (SyntaxError, ValueError) as e:
                raise RequestError(f"{where}: {label} does not compile: {getattr(e, 'msg', e)}") from None
    elif kind == "stdio":
        cases = _need(test, "cases", list, where)
        if not cases:
            raise RequestError(f"{where}: no tests: 'cases' is empty")
        for i, c in enumerate(cases):
            if not isinstance(c, dict) or not isinstance(c.get("input"), str) or not isinstance(
                    c.get("output"), str):
                raise RequestError(f"{where}: case {i} needs string fields 'input' and 'output'")
    elif kind == "call":
        _identifier(_need(test, "fn_name", str, where), "fn_name", where)
        cases = _need(test, "cases", list, where)
        if not cases:
            raise RequestError(f"{where}: no tests: 'cases' is empty")
        for i, c in enumerate(cases):
            if not isinstance(c, dict) or not isinstance(c.get("args"), list) or "expected" not in c:
                raise RequestError(f"{where}: case {i} needs a list 'args' and an 'expected' value")
    return test


def parse_request(obj: Any, *, timeout_s: float = 10.0, memory_mb: int = 512,
                  trace: bool = False) -> dict:
    """Validate one request and return a normalized copy with timeout_s/memory_mb/trace filled in.
    `memory_mb` is also the most a request may ask for: the pool's sandboxes are sized for it (its program's
    processes, the judge's copy of their data and the memory watch's margin), and a program allowed more could
    take its sandbox down before the watch sees it (`sandbox_error` rather than `memory`).

    Raises RequestError naming the bad field.
    """
    if not isinstance(obj, dict):
        raise RequestError(f"request must be a JSON object, got {type(obj).__name__}")
    rid = _need(obj, "id", str, "request")
    where = f"request {rid!r}"
    solution = _need(obj, "solution", str, where)
    try:
        test = _check_test(obj.get("test"))
    except RequestError as e:
        raise RequestError(f"{where}: {e}") from None
    t = obj.get("timeout_s", timeout_s)
    m = obj.get("memory_mb", memory_mb)
    tr = obj.get("trace", trace)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= MAX_TIMEOUT_S:
        raise RequestError(f"{where}: timeout_s must be a number in (0, {MAX_TIMEOUT_S}], got {t!r}")
    if isinstance(m, bool) or not isinstance(m, int) or not 32 <= m <= MAX_MEMORY_MB:
        raise RequestError(f"{where}: memory_mb must be an int in [32, {MAX_MEMORY_MB}], got {m!r}")
    if m > memory_mb:
        raise RequestError(f"{where}: memory_mb {m} is more than the pool's {memory_mb}, which its sandboxes are "
                           f"sized for: start the pool with memory_mb={m}")
    if not isinstance(tr, bool):
        raise RequestError(f"{where}: trace must be true/false, got {tr!r}")
    return {"id": rid, "solution": solution, "test": test, "timeout_s": float(t),
            "memory_mb": m, "trace": tr}


def sandbox_error(rid: str, message: str, isolation: str, duration_s: float = 0.0) -> Result:
    return Result(id=rid, status="sandbox_error", error_type="SandboxError", error_message=message,
                  isolation=isolation, duration_s=duration_s)
