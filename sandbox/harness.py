"""The in-child test harness: runs one solution against its tests and reports each outcome.

It runs inside the forked child that also runs the untrusted program (stdlib only, imported once
by the worker). The harness counts outcomes itself and writes them as records on a private pipe,
each prefixed with a per-run random nonce and tagged with the child's pid; the worker (outside the
child) only accepts a verdict when the harness's own `end` record arrived, so exiting early, raising
SystemExit/KeyboardInterrupt, closing fds, forking, or printing fake markers cannot produce
"passed". Everything the harness relies on (os.write, os.getpid, the builtins, the exception
classes, the JSON string encoder) is captured at import time, before any program runs, and test
code always executes against a clean copy of the builtins.

Record stream (one line each, "<nonce> <json>", every record carries the writer's pid):
  plan {total}  -> syntax {exc} | load {exc} | case {i, ok, exc?} / step {exc}  ... -> end {passed, total, trace}
  (+ trace {trace} when a traced run times out and the worker asks for the trace so far)

Known limit: the harness shares the program's address space, so a program that deliberately walks
the harness's frames or memory (sys._getframe, gc, ctypes) could recover the nonce and forge records.
"""
from __future__ import annotations

import ast
import builtins
import copy
import io
import json.encoder
import os
import signal
import sys

try:
    from . import tracer as _tracer
except ImportError:  # loaded flat inside the sandbox
    import tracer as _tracer

SOLUTION_FILENAME = _tracer.SOLUTION_FILENAME
TEST_FILENAME = "<test>"

# Captured before any untrusted code runs.
_BUILTINS = dict(builtins.__dict__)
_write = os.write
_getpid = os.getpid
_exit = os._exit
_enc_str = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring
_isinstance, _type, _len, _str, _int, _float = isinstance, type, len, str, int, float
_AssertionError, _MemoryError, _SystemExit = AssertionError, MemoryError, SystemExit
_BaseException, _Exception = BaseException, Exception
_JSON_ATOMS = (type(None), bool, int, float, str)
MESSAGE_CAP = 500

# Rigged-comparison guard: values returned to test code may not carry comparison/truth dunders
# written in Python outside the trusted runtime (the classic "AlwaysEqual" reward hack).
_RIGGABLE = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__abs__",
             "__sub__", "__rsub__", "__float__", "__round__", "__contains__")
_TRUSTED_DIRS = tuple({os.path.realpath(p) + os.sep for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.__file__))})
_FunctionType = type(lambda: None)
_PLAIN = (type(None), bool, int, float, str, bytes, complex, range)


class _Rigged(_AssertionError):
    pass


def _trusted_function(f) -> bool:
    """A Python-level dunder is trusted only if it is module code of the installed runtime."""
    code = getattr(f, "__code__", None)
    if code is None:
        return True
    fname = code.co_filename
    if not (_isinstance(fname, _str) and fname.startswith(_TRUSTED_DIRS)):
        return False
    mod = sys.modules.get(f.__globals__.get("__name__")) if _isinstance(getattr(f, "__globals__", None), dict) else None
    return mod is not None and getattr(mod, "__dict__", None) is f.__globals__ and getattr(mod, "__file__", None) == fname


def _check_rigged(value, depth: int = 0, budget: list | None = None):
    """Raise _Rigged if `value` (or an element, bounded) has an untrusted Python comparison dunder."""
    budget = budget if budget is not None else [10_000]
    budget[0] -= 1
    t = _type(value)
    if t in _PLAIN or budget[0] < 0 or depth > 20:
        return
    for cls in t.__mro__:
        d = cls.__dict__
        for name in _RIGGABLE:
            f = d.get(name)
            if _isinstance(f, _FunctionType) and not _trusted_function(f):
                raise _Rigged(f"the solution returned a {t.__name__[:60]} whose {name} is defined by the program "
                              "(rigged comparison)")
    if t in (list, tuple, set, frozenset):
        for v in value:
            _check_rigged(v, depth + 1, budget)
    elif t is dict:
        for k, v in value.items():
            _check_rigged(k, depth + 1, budget)
            _check_rigged(v, depth + 1, budget)


def _guarded(fn):
    """Wrap a solution function handed to test code so its return values are checked."""
    def guarded(*args, **kwargs):
        result = fn(*args, **kwargs)
        _check_rigged(result)
        return result
    return guarded


def _encode(o) -> str:
    """Minimal JSON encoder built from C-level primitives the program cannot patch."""
    t = _type(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if t is _int:
        return _int.__repr__(o)
    if t is _str:
        return _enc_str(o)
    if t is list or t is tuple:
        return "[" + ",".join([_encode(x) for x in o]) + "]"
    if t is dict:
        return "{" + ",".join([_enc_str(_str(k)) + ":" + _encode(v) for k, v in o.items()]) + "}"
    return _enc_str(_str.__str__(_float.__repr__(o)) if t is _float else "<unencodable>")


class _Reporter:
    def __init__(self, fd: int, nonce: str):
        prefix = (nonce + " ").encode()

        def emit(record: dict):
            record["pid"] = _getpid()  # a forked copy of the harness reports a pid the worker rejects
            data = prefix + (_encode(record) + "\n").encode("utf-8", "replace")
            while data:
                n = _write(fd, data)
                data = data[n:]

        self.emit = emit


def _safe_str(e: BaseException) -> str:
    try:
        s = _str(e)
    except _BaseException:
        s = "<unprintable>"
    return s[:MESSAGE_CAP]


def _innermost(tb):
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _solution_line(tb):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SOLUTION_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(e: BaseException, *, test_code: bool = True) -> dict:
    """Classify an exception: a real AssertionError raised by test code is a failed test."""
    last = _innermost(e.__traceback__)
    in_test = last is not None and last.tb_frame.f_code.co_filename == TEST_FILENAME
    if _isinstance(e, _Rigged) or (_isinstance(e, _AssertionError) and in_test and test_code):
        kind = "failed"
    elif _isinstance(e, _MemoryError):
        kind = "memory"
    else:
        kind = "error"
    name = "AssertionError" if _isinstance(e, _Rigged) else _type(e).__name__[:100]
    return {"type": name, "message": _safe_str(e), "line": _solution_line(e.__traceback__), "kind": kind}


def _mismatch(message: str) -> dict:
    return {"type": "AssertionError", "message": message[:MESSAGE_CAP], "line": None, "kind": "failed"}


def _contains_assert(node) -> bool:
    return any(_isinstance(n, ast.Assert) for n in ast.walk(node))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NOT_SPLITTABLE = (ast.Return, ast.Yield, ast.YieldFrom, ast.Nonlocal, ast.Global, ast.Await)


def _escapes_statement(node) -> bool:
    """True if a check() statement uses return/yield/global/... outside a nested scope."""
    for child in ast.iter_child_nodes(node):
        if _isinstance(child, _NOT_SPLITTABLE):
            return True
        if not _isinstance(child, _SCOPES) and _escapes_statement(child):
            return True
    return _isinstance(node, _NOT_SPLITTABLE)


def _humaneval_plan(test_src: str):
    """Split `check(candidate)` into top-level statements; those containing asserts are cases.

    Returns (param_name, [(is_case, code)]) or (None, None) when the body cannot be split.
    """
    tree = ast.parse(test_src, TEST_FILENAME)
    checks = [n for n in tree.body if _isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise ValueError("humaneval test source defines no check(candidate) function")
    fn = checks[-1]
    if _len(fn.args.args) != 1 or fn.args.vararg or fn.args.kwarg:
        return None, None
    if any(_escapes_statement(stmt) for stmt in fn.body):
        return None, None
    steps = []
    for stmt in fn.body:
        if _isinstance(stmt, ast.Expr) and _isinstance(stmt.value, ast.Constant):
            continue  # docstring
        mod = ast.Module(body=[stmt], type_ignores=[])
        steps.append((_contains_assert(stmt), compile(mod, TEST_FILENAME, "exec", dont_inherit=True),
                      ast.get_source_segment(test_src, stmt) or ""))
    if not any(step[0] for step in steps):
        return None, None
    return fn.args.args[0].arg, steps


def _json_value(x, depth=0):
    """Canonical JSON value of a returned object (tuples -> lists), or raise TypeError.

    Only exact builtin types are accepted, so objects with a rigged __eq__ never compare equal.
    """
    t = _type(x)
    if depth > 100:
        raise TypeError("value nested too deeply")
    if t in _JSON_ATOMS:
        return x
    if t is list or t is tuple:
        return [_json_value(v, depth + 1) for v in x]
    if t is dict:
        return {(_str(k) if _type(k) in _JSON_ATOMS else _json_value(k)): _json_value(v, depth + 1)
                for k, v in x.items()}
    raise TypeError(f"returned a {t.__name__}, not a JSON value")


def _norm_output(s: str) -> list:
    lines = [ln.rstrip() for ln in s.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run(request: dict, fd: int, nonce: str, output_limit: int) -> None:
    """Entry point in the child; never returns."""
    rep = _Reporter(fd, nonce)
    del nonce
    streams = (sys.stdout, sys.stderr)
    try:
        _run(request, rep.emit, output_limit)
        for s in streams:
            try:
                s.flush()
            except _BaseException:
                pass
    except _BaseException as e:  # harness failure: no end record, so the verdict is never passed
        try:
            rep.emit({"t": "harness_error", "message": _type(e).__name__ + ": " + _safe_str(e)})
        except _BaseException:
            pass
    _exit(0)


def _run(req: dict, emit, output_limit: int) -> None:
    test = req["test"]
    kind = test["kind"]
    tracer = _tracer.Tracer() if req.get("trace") else None
    clean_builtins = _BUILTINS

    # 1. plan the test cases (trusted test code only)
    steps = None
    param = None
    asserts = None
    if kind == "humaneval":
        param, steps = _humaneval_plan(test["test"])
        total = 1 if steps is None else sum(1 for step in steps if step[0])
        test_code = compile(test["test"], TEST_FILENAME, "exec", dont_inherit=True)
    elif kind == "asserts":
        total = _len(test["asserts"])
        setup_code = compile(test.get("setup") or "", TEST_FILENAME, "exec", dont_inherit=True)
        asserts = []
        for a in test["asserts"]:
            try:
                asserts.append(compile(a, TEST_FILENAME, "exec", dont_inherit=True))
            except SyntaxError as e:
                asserts.append(e)
    else:
        total = _len(test["cases"])
    emit({"t": "plan", "total": total})

    # 2. compile the solution
    try:
        code = compile(req["solution"], SOLUTION_FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        emit({"t": "syntax", "exc": {"type": _type(e).__name__, "message": _safe_str(getattr(e, "msg", e)),
                                      "line": getattr(e, "lineno", None), "kind": "syntax_error"}})
        emit({"t": "end", "passed": 0, "total": total, "trace": None})
        return

    passed = 0

    def finish():
        if tracer is not None:
            tracer.stop()
        emit({"t": "end", "passed": passed, "total": total,
              "trace": tracer.to_dict() if tracer is not None else None})

    if tracer is not None:
        # On timeout the worker sends SIGUSR1 before killing the child: report the trace so far (it
        # shows where the program was looping). A program may replace the handler; it only loses its trace.
        def dump_trace(signum, frame):
            tracer.stop()
            emit({"t": "trace", "trace": tracer.to_dict()})

        signal.signal(signal.SIGUSR1, dump_trace)

    def failure(exc: dict, e: BaseException | None):
        if tracer is not None and e is not None:
            tracer.record_exception(e)
        return exc

    # 3a. stdio: the whole program runs once per case. fds 0 and 1 themselves are pointed at per-case
    # files in the scratch dir, so input(), sys.stdin(.buffer), open(0), print, sys.stdout.buffer and
    # os.write(1, ...) all see the case's stdin and land in the captured output.
    if kind == "stdio":
        real_in, real_out = sys.stdin, sys.stdout
        scratch = os.getcwd()
        saved_out, saved_in = os.dup(1), os.dup(0)
        for i, case in enumerate(test["cases"]):
            builtins.__dict__.clear()
            builtins.__dict__.update(clean_builtins)
            in_path, out_path = os.path.join(scratch, f".stdin-{i}"), os.path.join(scratch, f".stdout-{i}")
            with open(in_path, "wb") as f:
                f.write(case["input"].encode())
            for path, target, flags in ((in_path, 0, os.O_RDONLY), (out_path, 1, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                fd = os.open(path, flags, 0o600)
                os.dup2(fd, target)
                os.close(fd)
            sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
            wrapper = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8")
            sys.stdout = wrapper
            exc = None
            ns = {"__name__": "__main__", "__builtins__": builtins}
            try:
                if tracer is not None:
                    tracer.start()
                try:
                    exec(code, ns)
                finally:
                    if tracer is not None:
                        tracer.stop()
            except _SystemExit as e:
                if e.code not in (None, 0):
                    exc = failure(_describe(e, test_code=False), e)
            except _BaseException as e:
                exc = failure(_describe(e, test_code=False), e)
            finally:
                try:
                    wrapper.flush()
                except _BaseException:
                    pass
                os.dup2(saved_out, 1)
                os.dup2(saved_in, 0)
                sys.stdin, sys.stdout = real_in, real_out
            try:
                with open(out_path, "rb") as f:
                    raw = f.read(output_limit + 1)
                os.unlink(out_path)
                os.unlink(in_path)
            except OSError as e:  # the program removed or replaced its own output file
                raw = b""
                exc = exc or {"type": _type(e).__name__, "message": f"case {i}: output lost: {_safe_str(e)}",
                              "line": None, "kind": "error"}
            try:
                _write(1, raw[:4096])  # the captured case output also shows up in Result.stdout
            except OSError:
                pass
            if _len(raw) > output_limit:  # also when the write then failed (EFBIG under RLIMIT_FSIZE)
                exc = {"type": "OutputLimitExceeded", "message": f"case {i}: more than {output_limit} bytes",
                       "line": None, "kind": "error"}
            if exc is None:
                got = raw.decode("utf-8", "replace")
                if _norm_output(got) == _norm_output(case["output"]):
                    passed += 1
                    emit({"t": "case", "i": i, "ok": True})
                    continue
                exc = _mismatch(f"case {i}: wrong output: expected {case['output'][:200]!r}, got {got[:200]!r}")
            emit({"t": "case", "i": i, "ok": False, "exc": exc})
        finish()
        return

    # 3b. other kinds: define the solution once
    ns = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        if tracer is not None:
            tracer.start()
        try:
            exec(code, ns)
        finally:
            if tracer is not None:
                tracer.stop()
    except _BaseException as e:
        emit({"t": "load", "exc": failure(_describe(e, test_code=False), e)})
        finish()
        return
    builtins.__dict__.clear()
    builtins.__dict__.update(clean_builtins)

    def run_case(i, fn, label=""):
        nonlocal passed
        try:
            if tracer is not None:
                tracer.start()
            try:
                fn()
            finally:
                if tracer is not None:
                    tracer.stop()
        except _BaseException as e:
            exc = failure(_describe(e), e)
            if exc["kind"] == "failed" and not exc["message"] and label:
                exc["message"] = label[:MESSAGE_CAP]
            emit({"t": "case", "i": i, "ok": False, "exc": exc})
        else:
            passed += 1
            emit({"t": "case", "i": i, "ok": True})

    def run_step(fn):
        try:
            fn()
        except _BaseException as e:
            emit({"t": "step", "exc": failure(_describe(e), e)})

    tns = dict(ns)
    tns["__builtins__"] = dict(clean_builtins)
    for name, value in ns.items():  # test code sees guarded versions of the solution's functions
        if _isinstance(value, _FunctionType):
            tns[name] = _guarded(value)

    if kind == "humaneval":
        entry = test["entry_point"]
        if entry not in ns:
            emit({"t": "load", "exc": {"type": "NameError", "message": f"entry point {entry!r} is not defined",
                                       "line": None, "kind": "error"}})
            finish()
            return
        candidate = ns[entry]
        if callable(candidate):
            candidate = _guarded(candidate)
        ok_setup = True
        try:
            exec(test_code, tns)
        except _BaseException as e:
            emit({"t": "step", "exc": failure(_describe(e), e)})
            ok_setup = False
        if ok_setup:
            if steps is None:
                run_case(0, lambda: tns["check"](candidate))
            else:
                tns[param] = candidate
                i = 0
                for is_case, step, label in steps:
                    if is_case:
                        run_case(i, lambda step=step: exec(step, tns), label)
                        i += 1
                    else:
                        run_step(lambda step=step: exec(step, tns))
    elif kind == "asserts":
        run_step(lambda: exec(setup_code, tns))
        for i, a in enumerate(asserts):
            if _isinstance(a, SyntaxError):
                emit({"t": "case", "i": i, "ok": False,
                      "exc": {"type": "SyntaxError", "message": f"test assert {i}: {a.msg}", "line": None,
                              "kind": "error"}})
                continue
            run_case(i, lambda a=a: exec(a, tns), test["asserts"][i])
    else:  # call
        name = test["fn_name"]
        fn = ns.get(name)
        if fn is None and _isinstance(ns.get("Solution"), _type):
            try:
                fn = getattr(ns["Solution"](), name, None)
            except _BaseException as e:
                emit({"t": "load", "exc": failure(_describe(e, test_code=False), e)})
                finish()
                return
        if not callable(fn):
            emit({"t": "load", "exc": {"type": "NameError", "message": f"function {name!r} is not defined",
                                       "line": None, "kind": "error"}})
            finish()
            return
        for i, case in enumerate(test["cases"]):
            def one(case=case, i=i):
                got = fn(*copy.deepcopy(case["args"]))
                try:
                    value = _json_value(got)
                except TypeError as e:
                    raise _AssertionError(f"case {i}: {e}") from None
                if not (case["expected"] == value):
                    raise _AssertionError(
                        f"case {i}: expected {_tracer.bounded_repr(case['expected'])}, got {_tracer.bounded_repr(value)}")
            # Mismatches are raised by harness code: classify them as failed tests explicitly.
            try:
                if tracer is not None:
                    tracer.start()
                try:
                    one()
                finally:
                    if tracer is not None:
                        tracer.stop()
            except _AssertionError as e:
                last = _innermost(e.__traceback__)
                if last is not None and last.tb_frame.f_code is one.__code__:
                    emit({"t": "case", "i": i, "ok": False, "exc": _mismatch(_safe_str(e))})
                else:
                    emit({"t": "case", "i": i, "ok": False, "exc": failure(_describe(e, test_code=False), e)})
            except _BaseException as e:
                emit({"t": "case", "i": i, "ok": False, "exc": failure(_describe(e, test_code=False), e)})
            else:
                passed += 1
                emit({"t": "case", "i": i, "ok": True})
    finish()
