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

Introspection guard (see _install_guard): the harness shares the program's address space, so just
before the program's code first runs it installs an irremovable audit hook (sys.addaudithook) and
takes itself out of the program's reach. Enforced from then on, for the program and its threads:
  * refused: sys._getframe (FrameAccessRefused, also a ValueError so namedtuple/typing/enum/logging
    keep working), reading tb_frame/gi_frame/cr_frame/ag_frame (FrameAttributeRefused, also an
    AttributeError so hasattr probes keep working), sys._current_frames/_current_exceptions,
    sys.settrace/setprofile (also threading.settrace), gc.get_objects/get_referrers/get_referents,
    gc.set_debug (no DEBUG_SAVEALL), every ctypes.* event and importing ctypes/_ctypes/_test*/
    _xxsubinterpreters, (re)importing or re-creating _signal/gc/_imp, sys.addaudithook (a later hook
    would see the harness's privileged events), os.symlink, os.fchdir;
  * open()/os.open/chdir of anything under /proc after resolving symlinks (/proc/self/mem,
    /proc/<pid>/mem, /proc/self/fd/N, /dev/fd/../mem; /dev/std* and fds 0-2 stay allowed), relative
    paths through ".." or "proc" (they could be taken from a directory fd), and open() of the
    record pipe's fd;
  * signal handlers installed by the program get frame=None; signal.getsignal never returns a
    harness handler with secrets, and sys.gettrace() returns None;
  * the harness module is removed from sys.modules and every module dict, the stand-ins the
    program can reach live in their own namespace, and the record writer is a closure (no class),
    so neither sys.modules nor object.__subclasses__() lead to the harness's globals;
  * tracer code (patchable by the program) only ever sees solution frames;
  * harness functions resolve builtins through a private copy, so patching the builtins module
    mid-run (from a test call or a thread) changes nothing the harness uses.
The hook is lifted only for the harness's own thread, only around code that runs no program code
(reading its tracebacks, switching its tracer), with the cyclic gc off (no program finalizer runs
there) and program signal handlers dropping the privilege while they run. What stays possible: a program that already has
native code in the process (a C extension it can import that reads memory, other than ctypes and
the _test* modules refused here; none in the stdlib), CPython bugs that hand out frames without an
audit event, and writing garbage to the record pipe (the worker then reports tampering: never
passed). Honest programs that format tracebacks themselves (traceback.print_exc, inspect.stack)
now get a refusal: the sandbox's own error_line/trace fields replace them.
"""
from __future__ import annotations

import _imp
import _signal
import _thread
import ast
import builtins
import copy
import gc
import io
import json.encoder
import os
import signal
import sys
import types

try:
    from . import tracer as _tracer
except ImportError:  # loaded flat inside the sandbox
    import tracer as _tracer

SOLUTION_FILENAME = _tracer.SOLUTION_FILENAME
TEST_FILENAME = "<test>"

# Captured before any untrusted code runs.
_BUILTINS = dict(builtins.__dict__)
# Harness functions resolve builtins (exec, getattr, callable, ...) through a private copy: a
# program that patches the builtins module mid-run (from a test call or a thread) cannot reach them.
__builtins__ = dict(_BUILTINS)
_write = os.write
_getpid = os.getpid
_exit = os._exit
_settrace = sys.settrace
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


# --- the introspection guard ------------------------------------------------------------------
# Installed (sys.addaudithook, irremovable) just before the program's code first runs. It refuses
# every CPython route from the program to the harness's frames or raw memory: the nonce and the
# record writer live only in harness frames and closures, and those are reachable only through
# frames (sys._getframe, tracebacks' tb_frame, generators' gi_frame, trace/profile functions,
# signal handlers' frame argument), the gc, ctypes or /proc/<pid>/mem. The hook, the privilege flag
# and the original functions it guards are held in closures of the hook itself, which no Python
# object the program can reach refers to; module globals hold nothing secret.

class SandboxViolation(Exception):
    """The program tried to reach the harness's frames or memory (refused by the audit hook).

    The concrete refusals also derive from the exception type stdlib callers already expect for
    "not available", so code that merely probes (namedtuple, typing, enum and logging call
    sys._getframe; asyncio and logging probe gi_frame/cr_frame with hasattr) keeps working.
    """


class FrameAccessRefused(SandboxViolation, ValueError):
    """sys._getframe refused (ValueError is what it raises when no such frame exists)."""


class FrameAttributeRefused(SandboxViolation, AttributeError):
    """tb_frame / gi_frame / cr_frame / ag_frame refused."""


class PathRefused(SandboxViolation, PermissionError):
    """open()/chdir of /proc paths (memory, fds of the harness) refused."""


_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_REFUSED_EVENTS = frozenset({
    "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.symlink", "os.fchdir",
})
# Never (re)loaded by the program: re-creating these would hand out unguarded originals.
_NO_IMPORT = frozenset({"_signal", "signal", "gc", "_imp", "_ctypes", "ctypes", "_testcapi", "_testinternalcapi",
                        "_testbuffer", "_testmultiphase", "_testsinglephase", "_xxsubinterpreters", "_xxtestfuzz"})
_STD_PATHS = frozenset({"/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd/0", "/dev/fd/1", "/dev/fd/2",
                        "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"})
_audit = sys.audit


# Stand-ins the program may call freely. They hold no secret (the real work happens in the hook),
# and they are defined in their own namespace so that their __globals__ do not lead to this module.
_STANDINS_SRC = """
def signal(signalnum, handler):
    box = []
    audit("sandbox.signal", signalnum, handler, box)
    return box[0]

def getsignal(signalnum):
    box = []
    audit("sandbox.getsignal", signalnum, box)
    return box[0]

def create_builtin(spec):
    box = []
    audit("sandbox.create_builtin", spec, box)
    return box[0]

def set_debug(flags):
    raise SandboxViolation("sandbox: gc.set_debug is not available to sandboxed programs")

def gettrace():
    return None

def dump_trace_handler(signum, frame):
    audit("sandbox.dump_trace")
"""
_STANDINS = {"audit": sys.audit, "SandboxViolation": SandboxViolation}
exec(compile(_STANDINS_SRC, "<sandbox-guard>", "exec"), _STANDINS)
_dump_trace_handler = _STANDINS["dump_trace_handler"]
# Tracer code captured before any program runs (the program can patch the Tracer class later).
_TRACER_LOCAL, _TRACER_RECORD, _TRACER_TO_DICT = _tracer.Tracer._local, _tracer.Tracer.record_exception, _tracer.Tracer.to_dict


def _unlink_module():
    """Drop every module-dict/sys.modules entry naming this module, so that the program cannot
    reach (and patch) the harness's globals; running harness code keeps its own reference."""
    me = sys.modules.get(__name__)
    if me is None:
        return
    for ref in gc.get_referrers(me):
        if _type(ref) is dict:
            for k in [k for k, v in ref.items() if v is me]:
                del ref[k]


def _install_guard(record_fd: int, emit, tracer):
    """Install the audit hook; returns (privileged, tb_entries) for harness-only use.

    privileged(fn, *args) runs fn with the guard lifted for the calling thread only: fn must never
    run program code. tb_entries(exc) lists (frame, lineno) of the exception's traceback.
    """
    get_ident, audit_type, str_, bytes_, int_, tuple_, list_ = _thread.get_ident, _type, _str, bytes, _int, tuple, list
    readlink, getcwd, fspath = os.readlink, os.getcwd, os.fspath
    tb_type, exc_tb = types.TracebackType, _BaseException.__traceback__.__get__
    orig_signal, orig_getsignal, orig_create_builtin = _signal.signal, _signal.getsignal, _imp.create_builtin
    module_spec = type(sys.__spec__) if sys.__spec__ is not None else None
    SIG_DFL, SIG_IGN, callable_ = _signal.SIG_DFL, _signal.SIG_IGN, callable
    gc_enabled, gc_disable, gc_enable = gc.isenabled, gc.disable, gc.enable
    settrace = sys.settrace
    state = [None]  # ident of the harness thread while it holds the privilege
    user_handler = {}  # frameless wrapper -> the program's own handler

    def refuse(what, cls=SandboxViolation):
        raise cls(f"sandbox: {what} is not available to sandboxed programs")

    def resolve(path: str) -> str:
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts, todo, hops = [], path.split("/"), 0
        while todo:
            comp = todo.pop(0)
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            cur = "/" + "/".join(parts + [comp])
            try:
                link = readlink(cur)
            except (OSError, ValueError):
                parts.append(comp)
                continue
            hops += 1
            if hops > 40:
                refuse("a symlink loop", PathRefused)
            if link.startswith("/"):
                parts = []
            todo = link.split("/") + todo
        return "/" + "/".join(parts)

    def check_path(path, what):
        if audit_type(path) is int_:
            if path == record_fd:
                refuse(f"{what} of the harness's record pipe", PathRefused)
            return
        if audit_type(path) not in (str_, bytes_):
            path = fspath(path)
        if audit_type(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        if path in _STD_PATHS:
            return
        if not path.startswith("/"):
            # A relative path may be taken from a directory fd (dir_fd=) rather than the cwd that
            # resolve() assumes: walking up or into a "proc" directory is refused outright.
            for comp in path.split("/"):
                if comp == ".." or comp == "proc":
                    refuse(f"{what} of the relative path {path!r}", PathRefused)
        real = resolve(path)
        if real == "/proc" or real.startswith("/proc/"):
            refuse(f"{what} of {path!r} (/proc)", PathRefused)

    def frameless(handler):
        """The program's signal handler: frame=None (the interrupted frame leads to the harness), and
        never privileged, even when the signal lands inside one of the harness's privileged windows."""
        def on_signal(signum, frame):
            held = state[0]
            state[0] = None
            try:
                return handler(signum, None)
            finally:
                state[0] = held
        return on_signal

    def hook(event, args):
        holder = state[0]
        if holder is not None and holder == get_ident():
            return
        if event == "object.__getattr__":
            if args[1] in _FRAME_ATTRS:
                refuse(f"the {args[1]} attribute", FrameAttributeRefused)
            return
        if event == "sys._getframe":
            raise FrameAccessRefused("sandbox: sys._getframe is not available to sandboxed programs")
        if event in _REFUSED_EVENTS or event.startswith("ctypes."):
            refuse(event)
        if event == "open":
            check_path(args[0], "open")
        elif event == "os.chdir":
            check_path(args[0], "chdir")
        elif event == "import":
            name = args[0]
            if audit_type(name) is str_ and name.partition(".")[0] in _NO_IMPORT:
                refuse(f"importing {name}")
        elif event == "sandbox.signal":
            signalnum, handler, box = args
            safe = handler if handler in (SIG_DFL, SIG_IGN) or not callable_(handler) else frameless(handler)
            prev = orig_signal(signalnum, safe)
            if safe is not handler:
                user_handler[safe] = handler
            box.append(user_handler.get(prev, prev))
        elif event == "sandbox.getsignal":
            signalnum, box = args
            prev = orig_getsignal(signalnum)
            box.append(user_handler.get(prev, prev))
        elif event == "sandbox.create_builtin":
            spec, box = args
            name = spec.name
            if audit_type(name) is not str_ or name in _NO_IMPORT or module_spec is None:
                refuse(f"creating the builtin module {name!r}")
            box.append(orig_create_builtin(module_spec(name, None, origin="built-in")))
        elif event == "sandbox.dump_trace" and tracer is not None:
            held = state[0]
            state[0] = get_ident()
            try:
                settrace(None)
            finally:
                state[0] = held
            emit({"t": "trace", "trace": _TRACER_TO_DICT(tracer)})

    # Privileged windows: the cyclic gc is off inside them, so no finalizer or gc callback of the
    # program runs there (signal handlers drop the privilege themselves, see frameless).
    def privileged(fn, *args):
        was_enabled = gc_enabled()
        gc_disable()
        state[0] = get_ident()
        try:
            return fn(*args)
        finally:
            state[0] = None
            if was_enabled:
                gc_enable()

    def tb_entries(exc) -> list:
        tb = exc_tb(exc)
        out = []
        was_enabled = gc_enabled()
        gc_disable()
        state[0] = get_ident()
        try:
            while tb is not None and audit_type(tb) is tb_type:
                out.append((tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
        finally:
            state[0] = None
            if was_enabled:
                gc_enable()
        return out

    _unlink_module()
    sys.addaudithook(hook)
    _signal.signal, _signal.getsignal = _STANDINS["signal"], _STANDINS["getsignal"]
    _imp.create_builtin = _STANDINS["create_builtin"]
    gc.set_debug = _STANDINS["set_debug"]  # DEBUG_SAVEALL would hand dead harness frames to gc.garbage
    sys.gettrace = _STANDINS["gettrace"]  # the harness's trace function must stay out of reach
    return privileged, tb_entries


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


def _make_emit(fd: int, nonce: str):
    """The record writer: the nonce lives only in its closure (a function, not a class, so that
    object.__subclasses__() cannot lead to it or to this module's globals)."""
    prefix, write, getpid, encode = (nonce + " ").encode(), _write, _getpid, _encode

    def emit(record: dict):
        record["pid"] = getpid()  # a forked copy of the harness reports a pid the worker rejects
        data = prefix + (encode(record) + "\n").encode("utf-8", "replace")
        while data:
            n = write(fd, data)
            data = data[n:]

    return emit


def _safe_str(e: BaseException) -> str:
    try:
        s = _str(e)
    except _BaseException:
        s = "<unprintable>"
    return s[:MESSAGE_CAP]


def _solution_line(entries):
    line = None
    for frame, lineno in entries:
        if frame.f_code.co_filename == SOLUTION_FILENAME:
            line = lineno
    return line


def _describe(e: BaseException, entries: list, *, test_code: bool = True) -> dict:
    """Classify an exception (entries: its traceback's (frame, lineno), innermost last): a real
    AssertionError raised by test code is a failed test."""
    in_test = _len(entries) > 0 and entries[-1][0].f_code.co_filename == TEST_FILENAME
    if _isinstance(e, _Rigged) or (_isinstance(e, _AssertionError) and in_test and test_code):
        kind = "failed"
    elif _isinstance(e, _MemoryError):
        kind = "memory"
    else:
        kind = "error"
    name = "AssertionError" if _isinstance(e, _Rigged) else _type(e).__name__[:100]
    return {"type": name, "message": _safe_str(e), "line": _solution_line(entries), "kind": kind}


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
    emit = _make_emit(fd, nonce)
    del nonce
    streams = (sys.stdout, sys.stderr)
    try:
        _run(request, emit, fd, output_limit)
        for s in streams:
            try:
                s.flush()
            except _BaseException:
                pass
    except _BaseException as e:  # harness failure: no end record, so the verdict is never passed
        try:
            emit({"t": "harness_error", "message": _type(e).__name__ + ": " + _safe_str(e)})
        except _BaseException:
            pass
    _exit(0)


def _run(req: dict, emit, fd: int, output_limit: int) -> None:
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
            tracing(False)
        emit({"t": "end", "passed": passed, "total": total,
              "trace": _TRACER_TO_DICT(tracer) if tracer is not None else None})

    if tracer is not None:
        # On timeout the worker sends SIGUSR1 before killing the child: report the trace so far (it
        # shows where the program was looping). A program may replace the handler; it only loses its trace.
        signal.signal(signal.SIGUSR1, _dump_trace_handler)  # the guard's hook does the dump

    # From here on the program's code runs: lift nothing for it (see _install_guard).
    privileged, tb_entries = _install_guard(fd, emit, tracer)
    if tracer is not None:
        solution_file = SOLUTION_FILENAME

        # The trace functions are harness closures: only solution frames ever reach tracer code
        # (which the program can patch), and sys.gettrace() no longer hands them out.
        def trace_local(frame, event, arg):
            return trace_local if _TRACER_LOCAL(tracer, frame, event, arg) is not None else None

        def trace_on(frame, event, arg):
            if tracer.truncated or frame.f_code.co_filename != solution_file:
                return None
            return trace_local

        def tracing(on: bool):
            if on and not tracer.truncated:
                privileged(_settrace, trace_on)
            elif not on:
                privileged(_settrace, None)

    def traced(fn):
        """Runs fn with line tracing on when a trace was asked for, and always off again after."""
        if tracer is None:
            return fn()
        tracing(True)
        try:
            return fn()
        finally:
            tracing(False)

    def failure(e: BaseException, test_code: bool = True) -> dict:
        entries = tb_entries(e)
        if tracer is not None:
            _TRACER_RECORD(tracer, e, frames=[(f, n) for f, n in entries if f.f_code.co_filename == SOLUTION_FILENAME])
        return _describe(e, entries, test_code=test_code)

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
                traced(lambda: exec(code, ns))
            except _SystemExit as e:
                if e.code not in (None, 0):
                    exc = failure(e, test_code=False)
            except _BaseException as e:
                exc = failure(e, test_code=False)
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
        traced(lambda: exec(code, ns))
    except _BaseException as e:
        emit({"t": "load", "exc": failure(e, test_code=False)})
        finish()
        return
    builtins.__dict__.clear()
    builtins.__dict__.update(clean_builtins)

    def run_case(i, fn, label=""):
        nonlocal passed
        try:
            traced(fn)
        except _BaseException as e:
            exc = failure(e)
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
            emit({"t": "step", "exc": failure(e)})

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
            emit({"t": "step", "exc": failure(e)})
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
                emit({"t": "load", "exc": failure(e, test_code=False)})
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
                traced(one)
            except _AssertionError as e:
                entries = tb_entries(e)
                if entries and entries[-1][0].f_code is one.__code__:
                    emit({"t": "case", "i": i, "ok": False, "exc": _mismatch(_safe_str(e))})
                else:
                    emit({"t": "case", "i": i, "ok": False, "exc": failure(e, test_code=False)})
            except _BaseException as e:
                emit({"t": "case", "i": i, "ok": False, "exc": failure(e, test_code=False)})
            else:
                passed += 1
                emit({"t": "case", "i": i, "ok": True})
    finish()
