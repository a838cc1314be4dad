"""Test semantics on the judge's side: plans the cases of each test kind, runs trusted test code, and
turns what happened into a verdict. Runs in the worker (worker.py), never in the program's process.

What the program's process tells us is a claim: an exception's type/message/line and the trace are
validated and bounded here and only ever shown, never counted. What counts (a case passed or not) is
decided here: an output compared here, a returned value compared here, an assert of the test code
evaluated here.

The names the program reports are claims too. The test namespace takes none that starts with `__` (its
`__builtins__` would otherwise be the program's), no builtin's name unless it is the function under test,
and for a standard-library module's name (`math`, which MBPP asserts use unimported) the judge's own module,
whatever the program bound to it. What the test code does take from the program: the functions under test,
its plain values, and its other callables, such as a HumanEval prompt's helpers (`poly`, `encode_cyclic`) that
its tests call; a program that redefines such a helper decides what it returns, as it would in a plain run.
"""
from __future__ import annotations

import ast
import builtins
import functools
import importlib
import json
import re
import signal
import sys

try:
    from . import codec
    from .tracer import COVERAGE_KEY
except ImportError:  # loaded flat inside the sandbox
    import codec
    from tracer import COVERAGE_KEY

TEST_FILENAME = "<test>"
MESSAGE_CAP = 500
EXC_DETAIL_CAP = 1 << 16  # characters of a program exception's own str() the test code sees (program.EXC_DETAIL_CAP)
MAX_EXC_ATTRS = 64
MAX_TRACE_BYTES = 200_000
PLAN_CACHE = 512   # distinct test sources whose compiled plan is kept


class Limit(BaseException):
    """A limit ended the program (timeout, memory, output): the verdict is decided, stop everything."""

    def __init__(self, status: str, etype: str, message: str):
        super().__init__(message)
        self.status, self.etype, self.message = status, etype, message


class Gone(BaseException):
    """The program's process ended (or broke its channel) while the judge waited for an answer. A BaseException, like
    Limit: a test's `except Exception:` around a call must not take a program that crashed or exited for one that
    raised (and a bare `except:` cannot either: see _guarded)."""

    def __init__(self, etype: str, message: str, status: str = "error"):
        super().__init__(message)
        self.status, self.etype, self.message = status, etype, message


def cap(b: bytes, limit: int) -> str:
    s = b.decode("utf-8", "replace")
    return s[:limit] + "...[truncated]" if len(s) > limit else s


class UnencodableValue(Exception):
    """A value of the program that is not plain data was compared, hashed or tested for truth.

    Verdict: `error` with error_type "UnencodableValue" (never passed). A plain local run could have
    compared it (e.g. a deque or an object with its own __eq__); here the program's objects never
    enter the judge."""


class RemoteError(BaseException):
    """Marks an exception raised inside the program's process; `info` is the program's claim about it. The judge's
    stand-in classes also derive from the builtin class the program's derived from (see _remote_class), so that a
    ValueError is an Exception and a SystemExit is not, as locally."""

    __claim__: dict = {}  # the program's claim about it (a dunder: no program attribute can take its name)


_REMOTE_CLASSES: dict[tuple, type] = {}  # this request's stand-in classes, by (name, base) (emptied by judge())
MAX_REMOTE_CLASSES = 1024


def _request_class(name: str, base: type, make) -> type:
    """This request's stand-in class `name` over `base`, made once by `make(name)`; past MAX_REMOTE_CLASSES, one per
    base (a program claiming classes by the thousand)."""
    if len(_REMOTE_CLASSES) >= MAX_REMOTE_CLASSES and (name, base) not in _REMOTE_CLASSES:
        name = base.__name__
    cls = _REMOTE_CLASSES.get((name, base))
    if cls is None:
        cls = _REMOTE_CLASSES[(name, base)] = make(name)
    return cls


def _remote_exception(info: dict) -> RemoteError:
    """An exception the test code can catch like the original: a ValueError, or a program's own subclass of it
    (json.JSONDecodeError, `class InvalidInput(ValueError)`), stays catchable as ValueError, with its args
    (str(KeyError('k')) is "'k'"), and marked as coming from the program."""
    e = None
    cls = _remote_class(info["type"], info.get("base"))
    args = info.get("args")
    if type(args) is tuple:
        try:
            e = cls(*args)
        except Exception:
            pass
    if e is None:
        try:
            e = cls(info["message"])
        except Exception:
            e = _remote_class(info["type"], "Exception")(info["message"])
    for name, value in info.get("attrs", {}).items():  # the program's `e.need`
        if hasattr(type(e), name) and not (name in _OS_FILENAMES and isinstance(e, OSError)):
            continue  # `args`, `errno`, `code`...: the class's own (a data descriptor wins locally)
        try:
            setattr(e, name, value)
        except Exception:
            pass
    e.__claim__ = info
    return e


_OS_FILENAMES = ("filename", "filename2")  # an OSError's, set through its class's own fields (str(e) shows them)


def _claimed_str(self) -> str:
    """str() of a stand-in: the program's own str() of its exception where it sent one (a class with its own
    __str__), else the builtin class's, over the args."""
    shown = self.__claim__.get("str")
    return shown if shown is not None else self._builtin_str(self)


def _remote_class(name: str, base_name: str | None) -> type:
    """The judge's stand-in for a program's exception class `name`: a subclass of RemoteError and of its nearest
    builtin class (`base_name`, or `name` itself; Exception where that names no builtin exception class)."""
    base = getattr(builtins, base_name or name, None)
    if not (isinstance(base, type) and issubclass(base, BaseException)):
        base = Exception

    def make(name):
        bases = (RemoteError,) if base is BaseException else (base, RemoteError)
        try:
            return type(name, bases, {"__str__": _claimed_str, "_builtin_str": staticmethod(bases[0].__str__)})
        except TypeError:
            return type(name, (Exception, RemoteError), {"__str__": _claimed_str,
                                                         "_builtin_str": staticmethod(Exception.__str__)})
    return _request_class(name, base, make)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(s: str) -> str:
    """`s` as valid text: lone surrogates (which the codec carries, and a UTF-8 writer refuses) become U+FFFD."""
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _SURROGATE.search(s) else s


def _texts(x):
    """`x` (JSON types) with every string `_text`."""
    if type(x) is str:
        return _text(x)
    if type(x) is list:
        return [_texts(i) for i in x]
    if type(x) is dict:
        return {_text(k): _texts(v) for k, v in x.items()}
    return x


def _claimed_exc(x) -> dict:
    """Validate and bound an exception report of the program."""
    if type(x) is not dict:
        x = {}
    etype = x.get("type") if type(x.get("type")) is str and x.get("type").isidentifier() else "UnknownError"
    msg = _text(x.get("message")[:MESSAGE_CAP]) if type(x.get("message")) is str else ""
    line = x.get("line") if type(x.get("line")) is int and 0 < x.get("line") < 10 ** 7 else None
    out = {"type": etype[:100], "message": msg, "line": line}
    if type(x.get("base")) is str and x["base"].isidentifier():
        out["base"] = x["base"][:100]
    if type(x.get("args")) is tuple:
        out["args"] = x["args"]
    if type(x.get("str")) is str:
        out["str"] = _text(x["str"][:EXC_DETAIL_CAP])
    if type(x.get("attrs")) is dict:
        out["attrs"] = {k: v for k, v in list(x["attrs"].items())[:MAX_EXC_ATTRS]
                        if type(k) is str and k.isidentifier() and not k.startswith("__")}
    return out


def _claimed_frame(e) -> bool:
    """Whether `e` has a trace event's shape: {"line": int, "fn": str, "locals": {str: str}}."""
    return (type(e) is dict and _count(e.get("line")) and type(e.get("fn")) is str
            and type(e.get("locals")) is dict and all(type(v) is str for v in e["locals"].values()))


def _within(x, budget: int) -> bool:
    """Whether the decoded value `x` is at most about `budget` bytes as JSON, found in O(budget) steps however
    large it is (serializing a claimed trace of 30 MiB to measure it took the judge seconds)."""
    stack = [x]
    while stack:
        y = stack.pop()
        t = type(y)
        budget -= len(y) + 2 if t is str else y.bit_length() // 3 + 1 if t is int else 4
        if t is dict:
            for kv in y.items():
                stack.extend(kv)
                budget -= 2
                if budget < 0:
                    return False
        elif t is list:
            for i in y:
                stack.append(i)
                budget -= 1
                if budget < 0:
                    return False
        if budget < 0:
            return False
    return True


def _count(n) -> bool:
    """A trace's counter or line number: an int a result's JSON can hold (sums of 4300-digit claims could not)."""
    return type(n) is int and 0 <= n < 1 << 53


def _claimed_trace(t):
    """Validate and bound a trace of the program; None if it is not a trace of tracer.Tracer.to_dict's shape.
    Rebuilt from JSON text, so that nothing but JSON types (no handle, set, bytes, tuple) reaches a result."""
    if type(t) is not dict or not _within(t, MAX_TRACE_BYTES):
        return None
    try:
        text = json.dumps(t, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > MAX_TRACE_BYTES:
        return None
    t = _texts(json.loads(text))
    cov, events, total, exc = t.get("coverage"), t.get("events"), t.get("events_total"), t.get("exception")
    if (type(cov) is not dict or not all(COVERAGE_KEY.fullmatch(k) and _count(n) for k, n in cov.items())
            or type(events) is not list
            or not all(_claimed_frame(e) for e in events) or not (total is None or _count(total))
            or not (exc is None or (type(exc) is dict and type(exc.get("type")) is str
                                    and type(exc.get("message")) is str and type(exc.get("frames")) is list
                                    and all(_claimed_frame(f) for f in exc["frames"])))):
        return None
    return {"coverage": cov, "events": events, "events_total": total, "exception": exc,
            "truncated": t.get("truncated") is True}


class DataObject:
    """Mixed into the judge's stand-ins for the program's scalar subclass values (data_object); `_base` is the
    builtin type they derive from, `_worker` the worker of the request. An attribute its builtin type lacks
    (an Enum member's `.name`, `.value`) is read from the program's object; a copy is the object itself (as an
    Enum member's is), so that it still goes back to the program as its own."""

    __slots__ = ()

    def __getattr__(self, name):
        hid = None if name.startswith("__") else self._worker.data_handle(self)
        if hid is None:
            raise AttributeError(name)
        return getattr(self._worker.handles(hid), name)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def data_object(name: str, value, worker):
    """A stand-in for a program's instance of a subclass of int, float, complex, str or bytes (`Color.RED` of an
    IntEnum or str Enum): an instance of a judge class named like the program's that derives from the value's type,
    holding the value. Equal to the value, but not identical to an equal plain value (`1 is Color.RED` is False, as
    locally); Worker.handles gives one per program object, so `f() is Color.RED` holds."""
    base = type(value)

    def make(name):
        try:
            return type(name, (base, DataObject), {"__slots__": (), "_base": base, "_worker": worker})
        except TypeError:
            return type(base.__name__, (base, DataObject), {"__slots__": (), "_base": base, "_worker": worker})
    return _request_class(name, base, make)(value)


class RemoteObject:
    """A callable or other object that lives in the program's process. Calling it (or its attributes)
    runs the program there; it refuses comparison, hashing and truth, so the program's own code can never
    decide what a test computes about its values. What the program computes as data (its str(), len(), items and
    `obj[k]`; whether a value is an instance of one of its classes) crosses as data, which the test code then
    compares itself: `x in obj` tests the items, never the program's own __contains__."""

    __slots__ = ("_worker", "_hid")
    _codec_handle = True  # sent as its handle, never iterated (codec.encode)

    def __init__(self, worker, hid: int):
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_hid", hid)

    def __call__(self, *args, **kwargs):
        return _call(self._worker, {"op": "call", "fn": self, "args": list(args), "kwargs": kwargs}, args)

    def __getattr__(self, name):
        if name.startswith("__") and name not in ("__name__", "__qualname__"):  # (a test may check f.__name__)
            raise AttributeError(name)
        return _call(self._worker, {"op": "getattr", "obj": self, "name": name}, ())

    def __setattr__(self, name, value):
        _call(self._worker, {"op": "setattr", "obj": self, "name": name, "value": value}, ())

    def _refuse(self, *a):
        raise UnencodableValue("the program returned a value that is not plain data "
                               "(None/bool/int/float/str/bytes/list/tuple/dict/set)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _refuse
    __index__ = __int__ = __float__ = __add__ = __radd__ = __sub__ = __rsub__ = _refuse
    # Hashed by identity (the judge's own, never the program's __hash__), so that a program's module-level dict
    # keyed by its own objects (an Enum member, a frozen dataclass) still crosses: as a key it equals nothing else.
    __hash__ = object.__hash__
    __mul__ = __rmul__ = __truediv__ = __abs__ = __round__ = _refuse

    def _method(self, name: str, *args, want: tuple = ()):
        """The program's own `obj.name(*args)`; where `want` is given, its value must be of those types (as the
        builtin that calls the method checks)."""
        value = _call(self._worker, {"op": "call", "fn": self, "method": name, "args": list(args), "kwargs": {}}, args)
        if want and type(value) not in want:
            raise TypeError(f"{name} returned {type(value).__name__}, not {want[0].__name__}")
        return value

    def __str__(self):
        return self._method("__str__", want=(str,))

    def __len__(self):
        n = self._method("__len__", want=(int, bool))
        if n < 0:
            raise ValueError("__len__() should return >= 0")
        return n

    def __iter__(self):
        return iter(self._method("__iter__"))   # the program's iterator, run to its end there: its items

    def __next__(self):
        return self._method("__next__")  # next(obj) there: its next item, or its StopIteration (or TypeError)

    def __contains__(self, item):
        return any(x is item or x == item for x in self)

    def __getitem__(self, key):
        return self._method("__getitem__", key)

    def __instancecheck__(self, instance):  # isinstance(value, ProgramClass)
        return self._method("__instancecheck__", instance, want=(bool,))

    def __repr__(self):
        return "<object in the program's process>"


def _next_seq(worker) -> int:
    worker.seq += 1  # from 1 in each program process (Worker.start): a count kept across requests told a program
    return worker.seq  # how many calls the programs before it in its sandbox had been made (round 9)


def _reply(proc, seq: int) -> dict:
    reply = proc.message()
    if reply.get("seq") != seq or reply.get("t") not in ("return", "raise"):
        raise Gone("ProtocolError", "the program answered out of turn")
    return reply


def _answer(worker, msg: dict) -> dict:
    """The program's answer to `msg`, sent when the test code makes the call and waited on. (Never sent ahead: a
    later call's arguments can hold, or be converted to, an earlier call's expected value, and a program that
    could read them before it answers would pass `rev('ab') == 'ba'`, `rev('ba') == 'ab'` by echoing.)"""
    msg["seq"] = seq = _next_seq(worker)
    try:
        payload = codec.encode(msg, worker.handle_id)  # once: the bytes checked are the bytes sent
    except codec.CodecError as e:
        raise UnencodableValue(f"test argument cannot be sent to the program: {e}") from None
    worker.proc.send(payload)
    return _reply(worker.proc, seq)


def _argument(args, kwargs: dict, key):
    """The call's argument at `key` (a position or a keyword, as the program names it); raises KeyError."""
    if type(key) is int and 0 <= key < len(args):
        return args[key]
    if type(key) is str and key in kwargs:
        return kwargs[key]
    raise KeyError(key)


def _call(worker, msg: dict, args):
    """One remote call: send, wait for the matching answer, apply mutations of list/dict/set args."""
    try:
        reply = _answer(worker, msg)
    except (Gone, Limit) as e:
        _fatal[0] = e
        raise
    kwargs = msg.get("kwargs") if type(msg.get("kwargs")) is dict else {}
    mutated = reply.get("args")
    if type(mutated) is dict:  # applied before a raise too: a local call that raised had mutated them as well
        for i, new in mutated.items():
            try:
                old = _argument(args, kwargs, i)
            except KeyError:
                continue
            if type(old) not in codec.MUTABLE_TYPES or type(new) is not type(old):
                continue
            if type(old) in (list, bytearray):
                old[:] = new
            else:
                old.clear()
                old.update(new)  # (an emptied Counter's update copies the counts)
    if reply["t"] == "raise":
        raise _remote_exception(_claimed_exc(reply.get("exc")))
    if "arg" in reply:  # it returned one of its arguments: the test's own object (what it returned, as data, anyway)
        try:
            return _argument(args, kwargs, reply["arg"])
        except KeyError:
            raise Gone("ProtocolError", "the program returned an argument the call did not have") from None
    return reply.get("value")


# --- planning -----------------------------------------------------------------------------------------
def _contains_assert(node) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _asserts_something(node) -> bool:
    """Whether `node` holds an assert that can fail (not one of a true constant)."""
    return any(isinstance(n, ast.Assert) and not (isinstance(n.test, ast.Constant) and n.test.value)
               for n in ast.walk(node))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NOT_SPLITTABLE = (ast.Return, ast.Yield, ast.YieldFrom, ast.Nonlocal, ast.Global, ast.Await)


def _escapes_statement(node) -> bool:
    """True if a check() statement uses return/yield/global/... outside a nested scope."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _NOT_SPLITTABLE):
            return True
        if not isinstance(child, _SCOPES) and _escapes_statement(child):
            return True
    return isinstance(node, _NOT_SPLITTABLE)


@functools.lru_cache(maxsize=PLAN_CACHE)
def compiled(src: str):
    """Code object of trusted test source (cached: the samples of one task share their tests; code
    objects are immutable and each request execs them in a fresh namespace)."""
    return compile(src, TEST_FILENAME, "exec", dont_inherit=True)


@functools.lru_cache(maxsize=8)  # ASTs are big
def _check_statements(test_src: str):
    """(param_name, check()'s statements without its docstring), or (None, None) when the body cannot
    be split. Raises ValueError when there is no check() or it asserts nothing (a request error)."""
    tree = ast.parse(test_src, TEST_FILENAME)
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise ValueError("the humaneval test defines no check(candidate) function")
    fn = checks[-1]
    if not _asserts_something(fn):
        raise ValueError("the humaneval check() contains no assert that can fail: it tests nothing")
    if len(fn.args.args) != 1 or fn.args.vararg or fn.args.kwarg:
        return None, None
    if any(_escapes_statement(stmt) for stmt in fn.body):
        return None, None
    if any(isinstance(n, _SCOPES) and _contains_assert(n) for stmt in fn.body for n in ast.walk(stmt)):
        return None, None  # a helper that asserts: its `def` would count as a case that always passes (round 9)
    return fn.args.args[0].arg, tuple(stmt for stmt in fn.body
                                      if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)))


def _segments(src: str, nodes) -> list[str]:
    """ast.get_source_segment of each node, with the source split into lines once (get_source_segment
    splits it on every call: most of the plan's cost on long tests). Columns are UTF-8 byte offsets."""
    parts = re.split(r"(\r\n|\r|\n)", src)
    lines = [text + end for text, end in zip(parts[::2], parts[1::2] + [""])]
    out = []
    for node in nodes:
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            out.append(lines[first].encode()[node.col_offset:node.end_col_offset].decode())
        else:
            out.append(lines[first].encode()[node.col_offset:].decode() + "".join(lines[first + 1:last])
                       + lines[last].encode()[:node.end_col_offset].decode())
    return out


@functools.lru_cache(maxsize=PLAN_CACHE)
def humaneval_plan(test_src: str):
    """Split `check(candidate)` into top-level statements; those containing asserts are cases, but for an assert
    that cannot fail (`assert True, "..."`: 50 lines of 37 HumanEval tests), which tests nothing and would give a
    program that fails every real assert partial credit.

    Returns (param_name, ((is_case, code, source), ...)) or (None, None) when the body cannot be split.
    Raises ValueError when there is no check() or it asserts nothing (a request error). Cached like
    `compiled`.
    """
    param, stmts = _check_statements(test_src)
    if stmts is None:
        return None, None
    return param, tuple((_asserts_something(stmt), compile(ast.Module(body=[stmt], type_ignores=[]), TEST_FILENAME,
                                                         "exec", dont_inherit=True), source)
                        for stmt, source in zip(stmts, _segments(test_src, stmts)))



_EXIT = codec.encode({"op": "exit"})
_NO_IMPORT = frozenset({"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc", "webbrowser"})


_OWN_MODULES = frozenset({"sandbox", "codec", "judge", "worker", "program", "tracer", "schema", "__main__"})


def _judge_module(name: str):
    """The judge's own copy of a module the program imported (tests may use it without importing it):
    standard-library modules, or modules the judge already has but its own; never one with import side effects."""
    parts = name.split(".")
    if parts[0] in _OWN_MODULES or any(p.startswith("_") for p in parts):  # venv.__main__ would sys.exit here
        return None
    if name in sys.modules:
        return sys.modules[name]
    if len(parts) > 1 or name not in sys.stdlib_module_names or name in _NO_IMPORT:
        return None  # a submodule only if the judge has it: importing one runs its package's code too
    try:
        return importlib.import_module(name)
    except Limit:  # the request's time ran out meanwhile (a program may name hundreds of modules)
        raise
    except BaseException:  # noqa: B036 - an import that exits or fails here must not end the judge
        return None


def functions_under_test(asserts: list, defined: set) -> set:
    """The program's names called by every assert; those that are not builtins if there are any.
    A program's `def sum` is the function under test when the asserts all call it and nothing else of
    the program; a program's `def abs` does not replace the test's abs around `f(x)`."""
    common = None
    for a in asserts:
        try:
            tree = ast.parse(a)
        except SyntaxError:
            continue
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        common = called if common is None else common & called
    common = (common or set()) & defined
    plain = {n for n in common if not hasattr(builtins, n)}
    return plain or common


def norm_output(s: str) -> list:
    lines = [ln.rstrip() for ln in s.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


# --- verdicts -----------------------------------------------------------------------------------------
class _Verdict:
    def __init__(self, total: int):
        self.total, self.passed, self.first = total, 0, None
        self.trace = None
        self.stdout, self.stderr = bytearray(), bytearray()

    def ok(self):
        self.passed += 1

    def bad(self, status: str, etype: str, message: str, line=None):
        if self.first is None:  # (a test's own message can show a program's str with lone surrogates)
            self.first = (status, etype, _text(message) if type(message) is str else message, line)

    def result(self) -> dict:
        from_judge = {"tests_passed": self.passed, "tests_total": self.total, "trace": self.trace}
        if self.first is None and self.passed == self.total:
            return {"status": "passed", "error_type": None, "error_message": None, "error_line": None, **from_judge}
        status, etype, message, line = self.first or ("error", "JudgeError", "not every test reported a result", None)
        return {"status": status, "error_type": etype, "error_message": message, "error_line": line, **from_judge}


def _exc_verdict(v: _Verdict, e: BaseException, label: str = "") -> None:
    """Classify an exception raised while a case ran in the judge."""
    if isinstance(e, RemoteError) and e.__claim__:  # (one the test raised itself has no claim: the last branch)
        info = e.__claim__
        status = "memory" if info["type"] == "MemoryError" else "error"
        v.bad(status, info["type"], info["message"], info["line"])
    elif isinstance(e, UnencodableValue):
        v.bad("error", "UnencodableValue", str(e)[:MESSAGE_CAP])
    elif isinstance(e, AssertionError):
        v.bad("failed", "AssertionError", (_message(e) or label)[:MESSAGE_CAP])
    else:  # the test code itself failed on what the program returned (e.g. TypeError)
        v.bad("error", type(e).__name__[:100], _message(e)[:MESSAGE_CAP])


def _message(e: BaseException) -> str:
    """str(e) for a verdict, without running the program: a message that is a program object (`assert ..., r`) is
    left out. (Its __str__ ran in the program, whose SystemExit or KeyboardInterrupt then escaped the judge and
    took the worker down: sandbox_error at will, red-team round 11.)"""
    if any(isinstance(a, RemoteObject) for a in e.args):
        return ""
    try:
        return str(e)
    except (Gone, Limit):
        raise
    except BaseException:  # noqa: B036 - whatever a message's own __str__ raises, the verdict stands
        return ""


def _merge_trace(v: _Verdict, t) -> None:
    t = _claimed_trace(t)
    if t is None:
        return
    if v.trace is None:
        v.trace = t
        return
    cov = v.trace["coverage"]
    for k, n in t["coverage"].items():
        cov[k] = cov.get(k, 0) + n
    v.trace["events"] = (v.trace["events"] + t["events"])[:200]
    v.trace["exception"] = v.trace["exception"] or t["exception"]
    v.trace["truncated"] = v.trace["truncated"] or t["truncated"]
    if v.trace["events_total"] is not None and type(t["events_total"]) is int:
        v.trace["events_total"] += t["events_total"]
    else:
        v.trace["events_total"] = None


def timeout_message(timeout_s) -> str:
    return f"wall-clock limit of {timeout_s}s exceeded"


_alarm_armed = False  # one judge per process: whether the test code's timer may still raise
_alarm_deadline = 0.0  # when the armed timer's Limit is due
_timer_on = False      # whether the interval timer may still be running (it must be stopped, armed or not)
_fatal: list = [None]  # the Gone or Limit a remote call of this request raised, whatever the test code did with it
# The running program's memory check, where the worker watches memory: (a function returning a Limit when its
# processes use too much, None otherwise; the first tick's delay; the period). While the timer is armed it also runs
# on the timer's ticks, so it runs while the judge computes on the program's data (decoding a reply that takes
# seconds, say), when the I/O loop does not: children that allocated then took the whole sandbox down
# (sandbox_error at will, red-team round 10).
_watch: list = [None, 0.0, 0.0]


def _alarm(*_):
    """SIGALRM: at most one Limit per armed timer, and none once it is cancelled. A signal lands between any two
    bytecodes, so a timer that fires as the tests end (or as the pump raises its own timeout at the same
    deadline) must not raise again while judge() handles that: the Limit would escape and kill the worker.
    Before the deadline, a tick of the memory watch."""
    import time
    global _alarm_armed
    if not _alarm_armed:
        return
    left = _alarm_deadline - time.monotonic()
    if left > 0:
        over = _watch[0]() if _watch[0] is not None else None
        if over is None:
            if left < _watch[2]:  # the last tick lands on the deadline
                signal.setitimer(signal.ITIMER_REAL, max(0.001, left))
            return
        _alarm_armed = False
        _fatal[0] = over
        raise over
    _alarm_armed = False
    _fatal[0] = Limit("timeout", "Timeout", "wall-clock limit exceeded")  # judge() words it with the request's limit
    raise _fatal[0]


def _test_alarm(deadline: float):
    """The test code's own time limit: SIGALRM at the request's deadline raises Limit in the judge; where memory
    is watched, the timer ticks at the watch's period until then. (The handler is installed once per worker.)"""
    import time
    global _alarm_armed, _alarm_deadline, _timer_on
    if signal.getsignal(signal.SIGALRM) is not _alarm:
        signal.signal(signal.SIGALRM, _alarm)
    _alarm_armed, _alarm_deadline, _timer_on = True, deadline, True
    left = max(0.001, deadline - time.monotonic())
    if _watch[0] is not None and left > _watch[1] + _watch[2]:
        signal.setitimer(signal.ITIMER_REAL, _watch[1], _watch[2])
    else:
        signal.setitimer(signal.ITIMER_REAL, left)


def _cancel_alarm():
    """Disarm the timer; from here on a late SIGALRM is ignored (it can still raise before the flag is down, inside
    judge()'s inner ``finally``, where the outer ``except Limit`` takes it as the timeout it is)."""
    global _alarm_armed, _timer_on
    _alarm_armed = False
    if _timer_on:
        _timer_on = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def judge(worker, req: dict, deadline: float, output_cap: int) -> dict:
    """Run one request; returns the result fields (status ... trace, stdout, stderr)."""
    test = req["test"]
    kind = test["kind"]
    if kind == "humaneval":
        param, steps = humaneval_plan(test["test"])
        total = 1 if steps is None else sum(1 for s in steps if s[0])
    elif kind == "asserts":
        total = len(test["asserts"])
    else:
        total = len(test["cases"])
    v = _Verdict(total)
    _fatal[0] = None
    _REMOTE_CLASSES.clear()  # a program's classes are its own request's: none may pile up in this long-lived judge
    try:
        try:
            if kind == "stdio":
                _run_stdio(worker, req, deadline, v)
            else:
                _run_functions(worker, req, deadline, v, (param, steps) if kind == "humaneval" else None)
        finally:
            _cancel_alarm()  # before any handler below runs: a late alarm cannot raise in them
    except Limit as e:
        message = e.message
        if e.status == "timeout":
            # One text whichever clock saw the deadline first (the pump's check or the test code's alarm): the
            # verdict, and the feedback the policy reads, must not depend on that race.
            message = timeout_message(req["timeout_s"])
            if worker.proc is not None and req.get("trace") and v.trace is None:
                _merge_trace(v, worker.proc.partial_trace())
        v.first = (e.status, e.etype, message, None)
    except Gone as e:
        v.bad(e.status, e.etype, e.message)
    finally:
        if worker.proc is not None:
            worker.proc.drain()
            v.stdout += worker.proc.out
            v.stderr += worker.proc.err
        worker.finish()
    out = v.result()
    if out["error_line"] is not None and out["error_line"] > req["solution"].count("\n") + 1:
        out["error_line"] = None  # a claimed line outside the program
    out.update(stdout=cap(bytes(v.stdout), output_cap), stderr=cap(bytes(v.stderr), output_cap))
    if not req.get("trace"):
        out["trace"] = None
    return out


def _run_stdio(worker, req, deadline, v: _Verdict) -> None:
    for i, case in enumerate(req["test"]["cases"]):
        proc = worker.start(req, "main", deadline, case["input"].encode())
        proc.wait_exit()
        proc.drain()
        got = bytes(proc.out)
        v.stdout += got[:4096]
        v.stderr += proc.err
        proc.out.clear()
        proc.err.clear()
        worker.finish()  # first: what the program left running must not compete with the judge for the CPU
        # The program's claim is its last frame ("done" or "syntax", sent as it ends); any before it are dropped
        # undecoded, and reading that one is timed as the request (frames of millions of items, written to be
        # decoded after the exit, held the judge past every limit). Its trace counts only where one was asked for.
        last = proc.frames.pop() if proc.frames else None
        proc.frames.clear()
        claim = None
        if last is not None:
            _test_alarm(deadline)
            try:
                msg = codec.decode(last)
                if type(msg) is dict and msg.get("t") in ("done", "syntax"):
                    claim = msg
                    if req.get("trace"):
                        _merge_trace(v, claim.get("trace"))
            except codec.CodecError:
                pass
            finally:
                _cancel_alarm()
        st = proc.exit_status
        if claim is not None and claim.get("t") == "syntax":
            exc = _claimed_exc(claim.get("exc"))
            v.bad("syntax_error", exc["type"], exc["message"], exc["line"])
            return
        if os_exited_ok(st):
            if norm_output(got.decode("utf-8", "replace")) == norm_output(case["output"]):
                v.ok()
            else:
                v.bad("failed", "AssertionError", f"case {i}: wrong output: expected {shown_expected(req['test'], i)}, "
                                                  f"got {got.decode('utf-8', 'replace')[:200]!r}")
            continue
        if claim is not None and claim.get("exc") is not None:
            exc = _claimed_exc(claim["exc"])
            v.bad("memory" if exc["type"] == "MemoryError" else "error", exc["type"], exc["message"], exc["line"])
        else:
            g = proc.fate()
            if g.etype == "ProcessExit":
                g.etype, g.message = "SystemExit", f"case {i}: program exited with a non-zero code"
            v.bad(g.status, g.etype, g.message)


def os_exited_ok(status) -> bool:
    import os
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _run_functions(worker, req, deadline, v: _Verdict, plan) -> None:
    test = req["test"]
    kind = test["kind"]
    proc = worker.start(req, "module", deadline)
    # The request's time limit holds from here, not only around the test code: decoding what the program reports
    # (its names and values, e.g. a set of colliding hashes) costs the judge time the program chooses.
    _test_alarm(deadline)
    msg = proc.message()
    if msg.get("t") == "syntax":
        exc = _claimed_exc(msg.get("exc"))
        v.bad("syntax_error", exc["type"], exc["message"], exc["line"])
        return
    worker.mark("load")
    if msg.get("t") != "loaded":
        raise Gone("ProtocolError", "the program did not report its names")
    if msg.get("exc") is not None:
        _merge_trace(v, msg.get("trace"))
        exc = _claimed_exc(msg["exc"])
        v.bad("memory" if exc["type"] == "MemoryError" else "error", exc["type"], exc["message"], exc["line"])
        try:
            proc.wait_exit()  # its atexit output, as a local run shows it; the verdict is already decided
        except (Gone, Limit):
            pass
        return
    names = msg.get("names") if type(msg.get("names")) is dict else {}
    ns = {"__name__": "__test__", "__builtins__": builtins}
    entries = {test["entry_point"]} if kind == "humaneval" else {test["fn_name"]} if kind == "call" else \
        functions_under_test(test["asserts"], set(names))
    for name, desc in names.items():
        if type(name) is not str or not name.isidentifier() or type(desc) is not tuple or len(desc) != 2:
            continue
        if name.startswith("__"):
            continue  # `__builtins__`, `__import__`, ...: the test namespace's machinery is the judge's alone
        if hasattr(builtins, name) and name not in entries:
            continue  # the test's abs/set/len stay the real ones (a program's `def abs` must not change them)
        if name not in entries and name in sys.stdlib_module_names:
            # A test's `math` (MBPP asserts use it without importing it) is the standard library's, whatever the
            # program bound to that name: a program's own `class math` with a lenient isclose decides nothing.
            module = _judge_module(name)
            if module is not None:
                ns[name] = module
            continue
        what, value = desc
        if type(what) is not str:
            continue
        if what == "module" and type(value) is str:
            module = _judge_module(value)
            if module is not None:
                ns[name] = module
        elif what == "value":
            ns[name] = value
        elif what == "callable" and isinstance(value, RemoteObject):
            ns[name] = value
        elif what == "exception" and type(value) is tuple and len(value) == 2 and all(
                type(x) is str and x.isidentifier() for x in value):
            ns[name] = _remote_class(value[0][:100], value[1][:100])  # the class its raises arrive as
    if kind == "call":
        _run_call(ns, test, v)
    elif kind == "asserts":
        _run_asserts(worker, ns, test, v)
    else:
        _run_humaneval(ns, test, v, plan)
    worker.mark("tests")
    try:  # still under the request's alarm (judge() cancels it): the goodbye's frames are the program's to make dear
        proc.send(_EXIT)
        while req.get("trace"):  # the trace of the last calls comes with the goodbye
            try:
                bye = proc.message()
            except Gone:
                if proc.exit_status is not None:
                    raise
                break  # a goodbye it broke (frames too dear to decode) brings no trace; its exit is waited for still,
                # as without trace (whether the decoding or the limit came first decided the verdict: a race)
            if bye.get("t") == "bye":
                _merge_trace(v, bye.get("trace"))
                break
        worker.mark("bye")
        proc.wait_exit()
        worker.mark("exit")
    except Gone:
        pass  # how the program ends after its tests does not change the verdict


def _guarded(v: _Verdict, fn, label: str = "") -> bool:
    """Run a piece of the (trusted) test code; whatever it raises but the judge's own Limit and Gone, a SystemExit
    or a bare BaseException included, is recorded as the verdict's error. Whether it ran clean."""
    try:
        fn()
    except (Gone, Limit):
        raise
    except BaseException as e:  # noqa: B036
        if _fatal[0] is None:
            _exc_verdict(v, e, label)
            return False
    if _fatal[0] is not None:  # the test caught it (a bare `except:`): the program's end decides, not the test
        raise _fatal[0]
    return True


def _case(v: _Verdict, fn, label: str = "") -> None:
    if _guarded(v, fn, label):
        v.ok()


def _run_asserts(worker, ns, test, v) -> None:
    _guarded(v, lambda: exec(compiled(test.get("setup") or ""), ns))
    for i, a in enumerate(test["asserts"]):
        try:
            code = compiled(a)
        except SyntaxError as e:
            v.bad("error", "SyntaxError", f"test assert {i}: {e.msg}")
            continue
        _case(v, lambda code=code: exec(code, ns), a)


def _run_humaneval(ns, test, v, plan) -> None:
    param, steps = plan
    entry = test["entry_point"]
    candidate = ns.get(entry)
    if not isinstance(candidate, RemoteObject):
        v.bad("error", "NameError", f"entry point {entry!r} is not defined")
        return
    if not _guarded(v, lambda: exec(compiled(test["test"]), ns)):
        return
    if steps is None:
        _case(v, lambda: ns["check"](candidate))
        return
    ns[param] = candidate
    local = _CheckLocals(ns)
    for is_case, code, label in steps:
        if is_case:
            _case(v, lambda code=code: exec(code, local), label)
        else:
            _guarded(v, lambda code=code: exec(code, local))


class _CheckLocals(dict):
    """check()'s own names, over the test module's: its split statements assign here, so a local `N = 100` does not
    rebind the module's N that a helper function of the test reads (as in a real call of check); names it does not
    assign are looked up in the module as they are then."""

    def __init__(self, module: dict):
        super().__init__()
        self.module = module

    def __missing__(self, name):
        return self.module[name]


def _run_call(ns, test, v) -> None:
    import copy
    name = test["fn_name"]
    fn = ns.get(name)
    if fn is None and isinstance(ns.get("Solution"), RemoteObject):
        method = []  # a method of an instance in the program's process; if __init__ raises or it has none, all err
        if not _guarded(v, lambda: method.append(getattr(ns["Solution"](), name))):
            return
        fn = method[0]
    if not isinstance(fn, RemoteObject):
        v.bad("error", "NameError", f"function {name!r} is not defined")
        return
    for i, case in enumerate(test["cases"]):
        def one(case=case, i=i):
            got = fn(*copy.deepcopy(case["args"]))
            value = _json_value(got)
            if not (case["expected"] == value):
                raise AssertionError(f"case {i}: expected {shown_expected(test, i)}, got {_short(value)}")
        _case(v, one)


def _json_value(x, depth=0):
    """JSON form of a returned value (tuples -> lists, keys -> str) for APPS call-based comparison."""
    x = _plain(x)
    t = type(x)
    if depth > 100:
        raise UnencodableValue("value nested too deeply")
    if x is None or t in (bool, int, float, str):
        return x
    if t in (list, tuple):
        return [_json_value(i, depth + 1) for i in x]
    if t in codec.DICT_TYPES:
        keys = [_plain(k) for k in x]
        return {_json_key(k): _json_value(i, depth + 1) for k, i in zip(keys, x.values())}
    raise UnencodableValue(f"returned a {t.__name__}, not a JSON value")


def _json_key(k) -> str:
    """A dict key as `json.dumps` writes it (what a JSON round trip of the value, APPS's comparison, makes of it:
    True -> "true", None -> "null", inf -> "Infinity"); other keys (tuples) as the repr of their JSON form."""
    if type(k) is str:
        return k
    if k is None or type(k) in (bool, int, float):
        return json.dumps(k)
    return repr(_json_value(k))


def _plain(x):
    """A data_object stand-in as its builtin type's value (what _json_value compares); anything else as it is."""
    return x._base(x) if isinstance(x, DataObject) else x


def _short(x) -> str:
    try:
        s = repr(x)
    except ValueError:  # an int past CPython's 4300-digit str limit (the codec carries ints up to 2^20 bits)
        s = f"<a {type(x).__name__} too large to show>"
    return s if len(s) <= 120 else s[:117] + "..."


def shown_expected(test: dict, i: int) -> str:
    """How a stdio/call mismatch message ("case i: ... expected E, got G") shows case i's expected value. G is
    the program's: a reader that splits the message finds it after exactly this E (repair.render_feedback)."""
    case = test["cases"][i]
    return repr(case["output"][:200]) if test["kind"] == "stdio" else _short(case["expected"])
