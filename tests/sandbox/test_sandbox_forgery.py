"""Forgery through introspection: programs that hunt the harness's nonce or record writer in memory.

The harness shares the program's process, so its record writer (and the per-run nonce inside it)
is reachable in principle through frames, the gc, ctypes or /proc/self/mem. Each program below
defines a WRONG `add` and tries one such route to write a forged all-passed record stream (or to
call the harness's own writer). The audit hook the harness installs before the program runs must
refuse every route: the verdict is never `passed`, and the next honest request still passes.
"""
import pytest

HE_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG = "\ndef add(a, b):\n    return a - b\n"
GOOD = {"id": "good", "solution": "def add(a, b):\n    return a + b\n",
        "test": {"kind": "humaneval", "test": HE_TEST, "entry_point": "add"}}

# Shared attack kit: given anything found in memory, forge the 2-of-2 stream and exit.
KIT = r'''
import os, json, sys
FOUND = []

def forge_with_emit(emit):
    emit({"t": "case", "i": 0, "ok": True})
    emit({"t": "case", "i": 1, "ok": True})
    emit({"t": "end", "passed": 2, "total": 2, "trace": None})
    os._exit(0)

def forge_with_prefix(*prefixes):
    recs = [{"t": "case", "i": 0, "ok": True}, {"t": "case", "i": 1, "ok": True},
            {"t": "end", "passed": 2, "total": 2, "trace": None}]
    data = b"".join(p + json.dumps(dict(r, pid=os.getpid())).encode() + b"\n" for p in prefixes for r in recs)
    for fd in range(3, 1024):
        try:
            os.write(fd, data)
        except OSError:
            pass
    os._exit(0)

def loot(obj):
    """Use a harness secret if obj is (or holds) one: the writer, its prefix cell, a nonce."""
    if callable(obj) and getattr(obj, "__name__", "") == "emit":
        forge_with_emit(obj)
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if isinstance(v, bytes) and len(v) == 33 and v.endswith(b" "):
            forge_with_prefix(v)
        if callable(v) and getattr(v, "__name__", "") == "emit":
            forge_with_emit(v)
    if isinstance(obj, str) and len(obj) == 32 and all(c in "0123456789abcdef" for c in obj):
        FOUND.append(obj.encode() + b" ")

def loot_frames(f):
    while f is not None:
        for v in list(f.f_locals.values()):
            loot(v)
        f = f.f_back
    if FOUND:  # the worker's own frames hold the raw nonce
        forge_with_prefix(*FOUND)
'''

ATTACKS = {
    "getframe_walk": "loot_frames(sys._getframe())\n",
    "getframe_walk_in_call": "def add(a, b):\n    loot_frames(sys._getframe())\n    return a - b\n",
    "inspect_stack": "import inspect\ndef add(a, b):\n    for info in inspect.stack():\n"
                     "        loot_frames(info.frame)\n    return a - b\n",
    "inspect_currentframe": "import inspect\nloot_frames(inspect.currentframe())\n",
    "traceback_frames": ("def add(a, b):\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n"
                         "        loot_frames(e.__traceback__.tb_frame)\n    return a - b\n"),
    "exc_info_frames": ("def add(a, b):\n    try:\n        raise KeyError\n    except KeyError:\n"
                        "        loot_frames(sys.exc_info()[2].tb_frame)\n    return a - b\n"),
    "traceback_module": "import traceback\ndef add(a, b):\n    traceback.print_stack()\n    loot_frames(next(traceback.walk_stack(None))[0])\n    return a - b\n",
    "generator_frame": ("def add(a, b):\n    def g():\n        loot_frames(box[0].gi_frame)\n        yield 1\n"
                        "    box = [g()]\n    next(box[0])\n    return a - b\n"),
    "current_frames": "def add(a, b):\n    for f in sys._current_frames().values():\n        loot_frames(f)\n    return a - b\n",
    "settrace_collects_frames": ("seen = []\ndef tr(frame, event, arg):\n    seen.append(frame)\n    return None\n"
                                 "sys.settrace(tr)\ndef add(a, b):\n    sys.settrace(None)\n"
                                 "    for f in seen:\n        loot_frames(f)\n    return a - b\n"),
    "setprofile_collects_frames": ("def pr(frame, event, arg):\n    sys.setprofile(None)\n    loot_frames(frame)\n"
                                   "sys.setprofile(pr)\n" + WRONG),
    "signal_handler_frame": ("import signal, time\ndef h(signum, frame):\n    loot_frames(frame)\n"
                             "signal.signal(signal.SIGALRM, h)\nsignal.setitimer(signal.ITIMER_REAL, 0.01)\n"
                             "def add(a, b):\n    t = time.time() + 0.2\n    while time.time() < t:\n        pass\n"
                             "    return a - b\n"),
    "recreated_signal_module": ("import _imp, importlib.machinery, time\n"
                                "sig = _imp.create_builtin(importlib.machinery.ModuleSpec('_signal', None))\n"
                                "sig.signal(14, lambda s, f: loot_frames(f))\nsig.setitimer(0, 0.01)\n"
                                "def add(a, b):\n    t = time.time() + 0.2\n    while time.time() < t:\n        pass\n"
                                "    return a - b\n"),
    "reimported_signal_module": ("import time\ndel sys.modules['_signal']\nimport _signal\n"
                                 "_signal.signal(14, lambda s, f: loot_frames(f))\n_signal.setitimer(0, 0.01)\n"
                                 "time.sleep(0.2)\n" + WRONG),
    "gc_get_objects": "import gc\nfor o in gc.get_objects():\n    loot(o)\n" + WRONG,
    "gc_referrers": ("import gc\ndef add(a, b):\n    for o in gc.get_referrers(sys.modules['builtins']):\n"
                     "        loot(o)\n    return a - b\n"),
    "gc_saveall": ("import gc\ngc.set_debug(gc.DEBUG_SAVEALL)\ndef add(a, b):\n    gc.collect()\n"
                   "    for o in gc.garbage:\n        loot(o)\n        if type(o).__name__ == 'frame':\n"
                   "            loot_frames(o)\n    return a - b\n"),
    "proc_self_mem": ("import re\ndef add(a, b):\n    maps = open('/proc/self/maps').read().splitlines()\n"
                      "    with open('/proc/self/mem', 'rb') as mem:\n        for line in maps:\n"
                      "            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
                      "            try:\n                mem.seek(lo)\n                chunk = mem.read(hi - lo)\n"
                      "            except (OSError, ValueError, OverflowError, MemoryError):\n                continue\n"
                      "            FOUND.extend(set(re.findall(rb'[0-9a-f]{32} ', chunk)))\n"
                      "    forge_with_prefix(*set(FOUND))\n"),
    "proc_pid_mem_via_symlinks": ("def add(a, b):\n    os.chdir('/dev/fd')\n    open('../mem', 'rb')\n    return a - b\n"),
    "dev_fd_dotdot_mem": "open('/dev/fd/../mem', 'rb')\n" + WRONG,
    "dir_fd_mem": ("root = os.open('/', os.O_RDONLY)\nfd = os.open('proc/self/mem', os.O_RDONLY, dir_fd=root)\n" + WRONG),
    "symlink_to_proc": "os.symlink('/proc/self/mem', 'm')\nopen('m', 'rb')\n" + WRONG,
    "proc_fd_reopen": ("def add(a, b):\n    for n in os.listdir('/proc/self/fd'):\n"
                       "        f = open('/proc/self/fd/' + n, 'wb')\n"
                       "        f.write(b'x {\"t\": \"end\"}\\n')\n    return a - b\n"),
    "ctypes_memory": ("import ctypes\ndef add(a, b):\n    frame = ctypes.pythonapi.PyEval_GetFrame\n"
                      "    frame.restype = ctypes.py_object\n    loot_frames(frame())\n    return a - b\n"),
    "private_ctypes": "import _ctypes\n" + WRONG,
    "own_audit_hook_rides_privilege": ("def hook(event, args):\n    if event == 'object.__getattr__' and args[1] == 'tb_frame':\n"
                                       "        loot_frames(args[0].tb_frame)\nsys.addaudithook(hook)\n"
                                       "def add(a, b):\n    raise ValueError\n"),
    "harness_module_globals": ("def add(a, b):\n    for name, mod in list(sys.modules.items()):\n"
                               "        for v in list(vars(mod).values()):\n            loot(v)\n    return a - b\n"),
    # Patch the harness's globals so the AlwaysEqual guard lets a rigged value through, or so its own
    # (correctly keyed) writer reports every case as ok.
    "patch_harness_module": ("class Eq:\n    def __eq__(self, o):\n        return True\n"
                             "def add(a, b):\n    return Eq()\n"
                             "for name in ('harness', 'sandbox.harness'):\n    h = sys.modules.get(name)\n"
                             "    if h is not None:\n        h._RIGGABLE = ()\n"),
    "harness_globals_via_worker": ("def add(a, b):\n    for mod in list(sys.modules.values()):\n"
                                   "        h = getattr(mod, 'harness', None)\n        if h is not None:\n"
                                   "            for v in list(vars(h).values()):\n                loot(v)\n"
                                   "            h._check_rigged = lambda *a: None\n    return Eq()\n"
                                   "class Eq:\n    def __eq__(self, o):\n        return True\n"),
    "harness_globals_via_signal_wrapper": ("import _signal\ng = _signal.getsignal.__globals__\n"
                                           "if '_RIGGABLE' in g:\n    g['_RIGGABLE'] = ()\n"
                                           "class Eq:\n    def __eq__(self, o):\n        return True\n"
                                           "def add(a, b):\n    return Eq()\n"),
    "harness_globals_via_subclasses": ("def walk(c, seen):\n    for s in type.__subclasses__(c):\n"
                                       "        if s not in seen:\n            seen.add(s)\n            walk(s, seen)\n"
                                       "seen = set()\nwalk(object, seen)\nclass Eq:\n    def __eq__(self, o):\n        return True\n"
                                       "for c in seen:\n    for v in list(vars(c).values()):\n"
                                       "        g = getattr(v, '__globals__', None)\n"
                                       "        if isinstance(g, dict) and '_RIGGABLE' in g:\n            g['_RIGGABLE'] = ()\n"
                                       "            g['_make_emit'] = None\n        loot(v)\n"
                                       "def add(a, b):\n    return Eq()\n"),
    "patch_tracer_class": ("for name in ('tracer', 'sandbox.tracer'):\n    T = sys.modules.get(name)\n"
                           "    if T is not None:\n"
                           "        T.Tracer._local = lambda self, frame, ev, arg: loot_frames(frame)\n"
                           "        T.Tracer.record_exception = lambda self, e, frames=None: [loot_frames(f) for f, _ in frames or ()]\n"
                           "        T.SOLUTION_FILENAME = 'nothing'\n"
                           "        T.bounded_locals = lambda loc, n: [loot(v) for v in list(loc.values())] and {}\n"
                           "def add(a, b):\n    x = a\n    raise ValueError(x)\n"),
    "gettrace_instance_patch": ("t = sys.gettrace()\nloot(t)\nif t is not None:\n"
                                "    t.__self__._local = lambda frame, ev, arg: loot_frames(frame)\n"
                                "def add(a, b):\n    x = a\n    return a - b\n"),
    # Patch the builtins the harness itself uses, after it restored them (from a test call / a thread).
    "patch_builtins_getattr_in_call": ("class Eq:\n    def __eq__(self, o):\n        return True\n"
                                       "def add(a, b):\n    import builtins\n    builtins.getattr = lambda *a: None\n"
                                       "    builtins.callable = lambda *a: False\n    return Eq()\n"),
    "thread_patches_exec": ("import threading, time, builtins\ndef later():\n    time.sleep(0.05)\n"
                            "    builtins.exec = lambda *a, **k: None\n"
                            "threading.Thread(target=later, daemon=True).start()\n"
                            "def add(a, b):\n    time.sleep(0.1)\n    return a - b\n"),
    # Try to run inside one of the harness's own privileged windows (reading its tracebacks).
    "signal_storm_during_harness": ("import signal\ndef h(signum, frame):\n    try:\n"
                                    "        loot_frames(sys._getframe())\n    except Exception:\n        pass\n"
                                    "signal.signal(signal.SIGALRM, h)\nsignal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)\n"
                                    "def add(a, b):\n    raise ValueError(a)\n"),
    "finalizer_storm_during_harness": ("class C:\n    def __init__(self):\n        self.me = self\n"
                                       "    def __del__(self):\n        try:\n            loot_frames(sys._getframe())\n"
                                       "        except Exception:\n            pass\n"
                                       "def add(a, b):\n    for _ in range(2000):\n        C()\n    raise ValueError(a)\n"),
    "trace_dump_handler": ("import signal\nloot(signal.getsignal(signal.SIGUSR1))\n"
                           "loot(sys.gettrace())\nloot(getattr(sys.gettrace(), '__self__', None))\n" + WRONG),
}


def _req(name, program, **kw):
    return {"id": name, "solution": KIT + program, "timeout_s": 3.0,
            "test": {"kind": "humaneval", "test": HE_TEST, "entry_point": "add"}, **kw}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_introspection_cannot_forge_a_verdict(executor, name):
    trace = name in ("trace_dump_handler", "settrace_collects_frames", "traceback_frames", "patch_tracer_class",
                     "gettrace_instance_patch", "getframe_walk_in_call")
    r, good = executor.run([_req(name, ATTACKS[name], trace=trace), GOOD])
    assert r.status in ("failed", "error"), (r.status, r.error_type, r.error_message, r.stderr[-300:])
    assert r.tests_passed == 0 if name in ("thread_patches_exec",) else r.tests_passed < 2
    assert good.status == "passed" and good.tests_passed == 2, good


def test_refusals_are_sandbox_violations(process_executor):
    """The routes fail because the guard refuses them (not by luck): the error names the guard."""
    r = process_executor.run([_req("why", "sys._getframe()\n" + WRONG)])[0]
    assert (r.status, r.error_type) == ("error", "FrameAccessRefused"), (r.error_type, r.error_message)
    r = process_executor.run([_req("why2", "open('/proc/self/mem', 'rb')\n" + WRONG)])[0]
    assert (r.status, r.error_type) == ("error", "PathRefused"), (r.error_type, r.error_message)


HONEST = '''
import collections, dataclasses, enum, logging, typing, asyncio, signal, json, re, io, os, tempfile
Point = collections.namedtuple("Point", "x y")
class NT(typing.NamedTuple):
    a: int
@dataclasses.dataclass
class D:
    v: int
Color = enum.Enum("Color", "RED GREEN")
T = typing.TypeVar("T")
logging.basicConfig(stream=io.StringIO())
logging.getLogger("x").warning("fine %d", 1)
async def co(x):
    await asyncio.sleep(0)
    return x
def gen(n):
    yield from range(n)
signal.signal(signal.SIGALRM, lambda s, f: None)
assert signal.getsignal(signal.SIGALRM) is not None
with open("data.txt", "w") as fh:
    fh.write("1 2")
os.makedirs("sub/dir", exist_ok=True)
with open(os.path.join("sub", "dir", "f"), "w") as fh:
    fh.write("x")
def add(a, b):
    try:
        {}["missing"]
    except KeyError as e:
        assert e.__traceback__.tb_lineno > 0
    p = Point(a, 0)
    return asyncio.run(co(p.x)) + D(b).v + sum(gen(0)) + NT(0).a + Color.RED.value - 1 + len(json.loads("[]"))
'''


def test_honest_introspection_free_programs_still_pass(executor):
    """namedtuple/typing/enum/logging (which probe sys._getframe), asyncio, signals, files, caught
    exceptions: all unaffected by the guard, traced and untraced."""
    plain, traced = executor.run([_req("honest", HONEST), _req("honest_traced", HONEST, trace=True)])
    assert plain.status == "passed", (plain.error_type, plain.error_message, plain.stderr[-500:])
    assert traced.status == "passed", (traced.error_type, traced.error_message)
    assert traced.trace["coverage"], traced.trace


def test_error_line_and_traced_exception_frames_survive_the_guard(executor):
    prog = "def add(a, b):\n    x = a * 10\n    return helper(x)\ndef helper(v):\n    return v / 0\n"
    r, = executor.run([{**_req("zde", ""), "solution": prog, "trace": True}])
    assert (r.status, r.error_type, r.error_line) == ("error", "ZeroDivisionError", 5)
    frames = r.trace["exception"]["frames"]
    assert [f["fn"] for f in frames] == ["add", "helper"] and frames[1]["locals"] == {"v": "10"}
