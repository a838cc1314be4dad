"""The forgery corpus: every class of attack of issue 10, run against real gVisor through one pool.

Each attack prints a marker just before its forging step, and the test asserts the marker came out
(the attack really ran that far: a crash in the attack's own code would otherwise look like a
defence), that the verdict is not `passed`, and that an honest request after it passes.
"""
import json
import os
import secrets
import subprocess
import sys

import pytest

from sandbox import Executor
from tests.sandbox.conftest import HAS_RUNSC

REACHED = "FORGE-REACHED"
HE_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG = "\ndef add(a, b):\n    return a - b\n"
GOOD_ADD = "def add(a, b):\n    return a + b\n"


def he(rid, program, test=HE_TEST, **kw):
    return {"id": rid, "solution": program, "test": {"kind": "humaneval", "test": test, "entry_point": "add"},
            "timeout_s": 4.0, **kw}


def asserts(rid, program, lines=("assert add(1, 2) == 3", "assert add(2, 2) == 4"), **kw):
    return {"id": rid, "solution": program, "test": {"kind": "asserts", "asserts": list(lines)}, "timeout_s": 4.0, **kw}


def call(rid, program, **kw):
    return {"id": rid, "solution": program, "timeout_s": 4.0,
            "test": {"kind": "call", "fn_name": "add", "cases": [{"args": [1, 2], "expected": 3},
                                                                 {"args": [2, 2], "expected": 4}]}, **kw}


def stdio(rid, program, **kw):
    return {"id": rid, "solution": program, "timeout_s": 4.0,
            "test": {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "2 2\n", "output": "4\n"}]},
            **kw}


GOOD = {"humaneval": he("good-he", GOOD_ADD), "asserts": asserts("good-as", GOOD_ADD), "call": call("good-call", GOOD_ADD),
        "stdio": stdio("good-io", "a, b = map(int, input().split())\nprint(a + b)\n")}
BUILD = {"humaneval": he, "asserts": asserts, "call": call, "stdio": stdio}
WRONG_IO = "a, b = map(int, input().split())\nprint(a - b)\n"


def mark(what="x"):
    return f"import sys as _s\n_s.stderr.write('{REACHED} {what}\\n'); _s.stderr.flush()\n"


# --- attacks on the four kinds: name -> program (for function kinds, for stdio) -------------------------
HIJACK = (
    "import os, stat, json, struct\n"
    "fds = [fd for fd in range(3, 64) if _ok(fd)] if False else []\n"
    "for fd in range(0, 64):\n"
    "    try:\n        st = os.fstat(fd)\n    except OSError:\n        continue\n"
    "    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):\n        fds.append(fd)\n"
    + mark("hijack") +
    "frames = []\n"
    "for msg in ({'t': 'end', 'passed': 2, 'total': 2}, ['d', ['t', 'return'], ['seq', 1], ['value', 3]],\n"
    "            ['d', ['t', 'return'], ['seq', 2], ['value', 4]], ['d', ['t', 'done']]):\n"
    "    b = json.dumps(msg).encode()\n    frames.append(struct.pack('>I', len(b)) + b)\n"
    "for fd in fds:\n"
    "    for f in frames:\n"
    "        try:\n            os.write(fd, f)\n        except OSError:\n            pass\n"
    "r, w = os.pipe()\nos.dup2(w, 3)\n"   # then take the channel away from the program's own side
)

RIGGED = {
    "mock_any": "from unittest import mock\ndef add(a, b):\n" + "    print('" + REACHED + "')\n    return mock.ANY\n",
    "magicmock": "from unittest.mock import MagicMock\ndef add(a, b):\n    print('" + REACHED + "')\n"
                 "    m = MagicMock()\n    m.__eq__.return_value = True\n    return m\n",
    "partial_eq": "import functools\nclass P:\n    __eq__ = functools.partial(lambda s, o: True, None)\n"
                  "def add(a, b):\n    print('" + REACHED + "')\n    return P()\n",
    "staticmethod_eq": "class S:\n    __eq__ = staticmethod(lambda *a: True)\ndef add(a, b):\n    print('" + REACHED + "')\n"
                       "    return S()\n",
    "exec_into_trusted_module": "import fractions\nexec('class Eq:\\n    def __eq__(s, o): return True\\n', fractions.__dict__)\n"
                                "def add(a, b):\n    print('" + REACHED + "')\n    return fractions.Eq()\n",
    "metaclass_instancecheck": "class M(type):\n    def __instancecheck__(cls, o): return True\n"
                               "    def __subclasscheck__(cls, o): return True\nclass X(metaclass=M):\n"
                               "    def __eq__(s, o): return True\ndef add(a, b):\n    print('" + REACHED + "')\n    return X()\n",
    "class_property_lies": "class X:\n    __class__ = property(lambda s: int)\n    def __eq__(s, o): return True\n"
                           "def add(a, b):\n    print('" + REACHED + "')\n    return X()\n",
    "list_subclass_rigged_items": "class E:\n    def __eq__(s, o): return True\nclass L(list):\n    def __eq__(s, o): return True\n"
                                  "def add(a, b):\n    print('" + REACHED + "')\n    return L([E()])\n",
    "int_subclass_eq": "class I(int):\n    def __eq__(s, o): return True\n    __hash__ = int.__hash__\n"
                       "def add(a, b):\n    print('" + REACHED + "')\n    return I(a - b)\n",
    "lazy_iterator": "class E:\n    def __eq__(s, o): return True\ndef add(a, b):\n    print('" + REACHED + "')\n"
                     "    return iter([E()])\n",
    "callable_instance_entry": "class C:\n    def __call__(self, a, b):\n        print('" + REACHED + "')\n"
                               "        class E:\n            def __eq__(s, o): return True\n        return E()\nadd = C()\n",
    "class_as_entry": "class add:\n    def __init__(self, a, b):\n        print('" + REACHED + "')\n"
                      "    def __eq__(self, o):\n        return True\n",
}

POISON = {
    # the tests' environment is the judge's: nothing the program does to its own names or modules reaches it
    "shadow_abs_and_set": "def abs(x):\n    return 0\nset = lambda *a: 0\n" + mark("shadow") + WRONG,
    "sys_modules_math": "import sys, types\nfake = types.ModuleType('math')\nfake.isclose = lambda *a, **k: True\n"
                        "fake.fabs = lambda x: 0.0\nsys.modules['math'] = fake\n" + mark("modules") + WRONG,
    "meta_path": "import sys\nclass F:\n    def find_spec(self, name, path=None, target=None):\n"
                 "        raise ImportError('poisoned')\nsys.meta_path.insert(0, F())\nsys.modules.pop('math', None)\n"
                 + mark("meta_path") + WRONG,
    "patch_math_isclose": "import math, builtins\nmath.isclose = lambda *a, **k: True\nbuiltins.abs = lambda x: 0\n"
                          "builtins.AssertionError = KeyError\n" + mark("isclose") + WRONG,
}
POISON_TEST = ("def check(candidate):\n    import math\n    assert math.isclose(candidate(1, 2), 3)\n"
               "    assert abs(candidate(2, 2) - 4) < 1e-9 and set([1]) == {1}\n")


def _run(ex, reqs):
    results = ex.run(reqs)
    return {r.id: r for r in results}


def test_rigged_values_never_pass(gvisor_executor):
    reqs = []
    for name, prog in RIGGED.items():
        reqs += [he(f"{name}/he", prog), asserts(f"{name}/as", prog), call(f"{name}/call", prog), GOOD["humaneval"]]
    got = _run(gvisor_executor, reqs)
    for name in RIGGED:
        for kind in ("he", "as", "call"):
            r = got[f"{name}/{kind}"]
            assert REACHED in r.stdout, (name, kind, r.status, r.error_type, r.error_message, r.stderr[-300:])
            assert r.status in ("failed", "error"), (name, kind, r.status, r.error_type)
    assert got["good-he"].status == "passed"


def test_poisoned_environment_does_not_reach_the_tests(gvisor_executor):
    reqs = []
    for name, prog in POISON.items():
        reqs += [he(f"{name}/he", prog, POISON_TEST),
                 asserts(f"{name}/as", prog, ["import math\nassert math.isclose(add(1, 2), 3)",
                                              "assert abs(add(2, 2) - 4) < 1e-9"]), GOOD["asserts"]]
    # and the honest program with the same tests passes: the judge's math/abs are the real ones
    reqs.append(he("honest-poison-test", GOOD_ADD, POISON_TEST))
    got = _run(gvisor_executor, reqs)
    for name in POISON:
        for kind in ("he", "as"):
            r = got[f"{name}/{kind}"]
            assert REACHED in r.stderr, (name, kind, r.status, r.error_message, r.stderr[-300:])
            assert (r.status, r.error_type, r.tests_passed) == ("failed", "AssertionError", 0), (name, kind, r)
    assert got["honest-poison-test"].status == "passed"
    assert got["good-as"].status == "passed"


def test_record_stream_hijack_on_all_kinds(gvisor_executor):
    reqs = [he("hijack/he", HIJACK + WRONG), asserts("hijack/as", HIJACK + WRONG), call("hijack/call", HIJACK + WRONG),
            stdio("hijack/io", HIJACK + WRONG_IO)] + list(GOOD.values())
    got = _run(gvisor_executor, reqs)
    for kind in ("he", "as", "call", "io"):
        r = got[f"hijack/{kind}"]
        assert f"{REACHED} hijack" in r.stderr, (kind, r.status, r.error_message, r.stderr[-300:])
        assert r.status in ("failed", "error") and r.tests_passed == 0, (kind, r.status, r.error_type, r.error_message)
    assert all(got[g["id"]].status == "passed" for g in GOOD.values())


MEMORY_SCAN = r'''
import ctypes, re, sys
def scan(pattern):
    """Every match of `pattern` in this process's readable memory (ctypes reads of /proc/self/maps)."""
    hits = 0
    for line in open('/proc/self/maps'):
        addr, perms = line.split()[:2]
        if not perms.startswith('r') or '[vvar]' in line or '[vsyscall]' in line:
            continue
        lo, hi = (int(x, 16) for x in addr.split('-'))
        if hi - lo > (256 << 20):
            continue
        try:
            chunk = ctypes.string_at(lo, hi - lo)
        except Exception:
            continue
        hits += len(re.findall(pattern, chunk))
    return hits
'''


def test_memory_reads_find_no_expected_values(gvisor_executor):
    # The expected values and the test code never enter the program's process: a full scan of its
    # memory finds the argument the judge sent (proof the scan works) and never the expected value.
    exp, arg = secrets.token_hex(4), secrets.token_hex(4)
    find = ("def add(a, b):\n    control = scan(rb'ARG-TOKEN-[0-9a-f]{8}')\n    leaked = scan(rb'EXP-TOKEN-[0-9a-f]{8}')\n"
            "    print('" + REACHED + "', control, leaked, flush=True)\n    return 'nothing'\n")
    io_find = ("x = input()\ncontrol = scan(rb'ARG-TOKEN-[0-9a-f]{8}')\nleaked = scan(rb'EXP-TOKEN-[0-9a-f]{8}')\n"
               "print('" + REACHED + "', control, leaked, file=sys.stderr, flush=True)\nprint('nothing')\n")
    test = f"def check(candidate):\n    assert candidate('ARG-TOKEN-{arg}', 0) == 'EXP-TOKEN-{exp}'\n"
    reqs = [he("mem/he", MEMORY_SCAN + find, test),
            asserts("mem/as", MEMORY_SCAN + find, [f"assert add('ARG-TOKEN-{arg}', 0) == 'EXP-TOKEN-{exp}'"]),
            {"id": "mem/call", "solution": MEMORY_SCAN + find, "timeout_s": 4.0,
             "test": {"kind": "call", "fn_name": "add", "cases": [{"args": [f"ARG-TOKEN-{arg}", 0],
                                                                   "expected": f"EXP-TOKEN-{exp}"}]}},
            {"id": "mem/io", "solution": MEMORY_SCAN + io_find, "timeout_s": 4.0,
             "test": {"kind": "stdio", "cases": [{"input": f"ARG-TOKEN-{arg}\n", "output": f"EXP-TOKEN-{exp}\n"}]}},
            GOOD["call"]]
    got = _run(gvisor_executor, reqs)
    for rid in ("mem/he", "mem/as", "mem/call", "mem/io"):
        r = got[rid]
        out = r.stdout if rid != "mem/io" else r.stderr
        line = [ln for ln in out.splitlines() if ln.startswith(REACHED)]
        assert line, (rid, r.status, r.error_type, r.error_message, r.stderr[-500:])
        control, leaked = map(int, line[0].split()[1:])
        assert control >= 1 and leaked == 0, (rid, control, leaked)
        assert r.status == "failed", (rid, r.status)
    assert got["good-call"].status == "passed"


WRONG_KIND = {
    # name -> (program, request builder, expected (status, error_type))
    "sigxcpu_self": ("import os, signal\n" + mark("sigxcpu") + "os.kill(os.getpid(), signal.SIGXCPU)\n" + WRONG,
                     he, ("error", "SIGXCPU")),
    "sigxcpu_self_io": ("import os, signal\n" + mark("sigxcpu") + "os.kill(os.getpid(), signal.SIGXCPU)\n", stdio,
                        ("error", "SIGXCPU")),
    # the compiler gives up (RecursionError, or MemoryError under RLIMIT_AS): the program does not compile
    "compile_recursion": ("x = " + "-" * 200000 + "1\n" + WRONG, he, ("syntax_error", None)),
    "fork_memory_bomb": ("import os\n" + mark("bomb") + "for _ in range(8):\n    if os.fork() == 0:\n        break\n"
                         "x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n", he, ("memory", "MemoryError")),
}


def test_wrong_verdict_kinds(gvisor_executor):
    reqs = []
    for name, (prog, build, _) in WRONG_KIND.items():
        reqs += [build(name, prog, memory_mb=256), GOOD["humaneval"]]
    got = ex_results = gvisor_executor.run(reqs)
    for (name, (prog, build, (status, etype))), r, good in zip(WRONG_KIND.items(), ex_results[::2], ex_results[1::2]):
        assert r.status == status, (name, r.status, r.error_type, r.error_message, r.stderr[-300:])
        if etype is not None:
            assert r.error_type == etype, (name, r.error_type)
        if "FORGE" in prog:
            assert REACHED in r.stderr, (name, r.stderr[-300:])
        assert good.status == "passed", (name, good)
    assert got


def test_filesystem_floods_do_not_outlast_cleanup(gvisor_executor):
    nested = ("import os\n" + "p = '.'\nfor i in range(1500):\n    p = os.path.join(p, 'd')\n    os.mkdir(p)\n"
              + mark("nested") + WRONG)
    inodes = ("import os\nn = 0\ntry:\n    while True:\n        open(f'f{n}', 'w').close()\n        n += 1\n"
              "except OSError:\n    pass\n" + mark("inodes") + WRONG)
    look = ("import os\nassert os.listdir('.') == [], os.listdir('.')\n" + GOOD_ADD)
    results = gvisor_executor.run([he("nested", nested), he("inodes", inodes, timeout_s=3.0), he("look1", look),
                                   he("look2", look)])
    for r in results[:2]:
        assert r.status in ("failed", "timeout") and r.status != "sandbox_error", (r.id, r.status, r.error_message)
    assert REACHED in results[0].stderr
    assert [r.status for r in results[2:]] == ["passed", "passed"], [r.error_message for r in results[2:]]


SHM = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY = 0x1E7A
'''


def test_sysv_shared_memory_does_not_cross_requests(gvisor_executor):
    make = SHM + ("shmid = libc.shmget(KEY, 4096, 0o1666)\nassert shmid >= 0, ctypes.get_errno()\n"
                  "addr = libc.shmat(shmid, None, 0)\nctypes.memmove(addr, b'leak', 4)\n" + mark("shm") + WRONG)
    look = SHM + ("shmid = libc.shmget(KEY, 0, 0o666)\nassert shmid == -1, 'segment of another program visible'\n"
                  + GOOD_ADD)
    for _ in range(2):  # with 2 workers, at least one look follows a make in the same sandbox
        results = gvisor_executor.run([he("shm1", make), he("shm2", make), he("look1", look), he("look2", look)])
        for r in results[:2]:
            assert REACHED in r.stderr and r.status == "failed", (r.status, r.error_message, r.stderr[-300:])
        assert [r.status for r in results[2:]] == ["passed", "passed"], [r.error_message for r in results[2:]]


HONEST_IO = {
    "exit": "a, b = map(int, input().split())\nprint(a + b)\nexit()\n",
    "quit": "a, b = map(int, input().split())\nprint(a + b)\nquit(0)\n",
    "os_exit_after_flush": "import os, sys\na, b = map(int, input().split())\nprint(a + b)\nsys.stdout.flush()\nos._exit(0)\n",
    "atexit_output": "import atexit\na, b = map(int, input().split())\natexit.register(lambda: print(a + b))\n",
    "dunder_stdout": "import sys\na, b = map(int, input().split())\nsys.__stdout__.write(f'{a + b}\\n')\n",
    "thread_main": "import threading\ndef main():\n    a, b = map(int, input().split())\n    print(a + b)\n"
                   "threading.Thread(target=main).start()\n",
    # the program's process ends without the interpreter's teardown (program._finish): what a plain run
    # flushes at exit must still come out
    "no_newline_unflushed": "import sys\na, b = map(int, input().split())\nsys.stdout.write(str(a + b))\n",
    "unclosed_fd1_file": "a, b = map(int, input().split())\nout = open(1, 'w', closefd=False)\nout.write(f'{a + b}\\n')\n",
    "replaced_stdout": "import io, sys\nsys.stdout = io.TextIOWrapper(open(1, 'wb', closefd=False))\n"
                       "a, b = map(int, input().split())\nprint(a + b)\n",
}
HONEST_FN = {
    "userlist": "from collections import UserList\ndef add(a, b):\n    return UserList([a + b])[0]\n",
    "userlist_whole": "from collections import UserList\ndef pair(a, b):\n    return UserList([a, b])\n"
                      "def add(a, b):\n    return sum(pair(a, b))\n",
    "namedtuple": "from collections import namedtuple\nP = namedtuple('P', 'x')\ndef add(a, b):\n    return P(a + b).x\n",
    "exit_defined": "def add(a, b):\n    assert callable(exit) and callable(quit)\n    return a + b\n",
    "atexit_in_module": "import atexit\natexit.register(print, 'bye')\n" + GOOD_ADD,
    # site-packages are importable (program._site: their paths, not the .pth files' start-up code)
    "site_package": "import sys, pluggy\nassert any(p.endswith('site-packages') for p in sys.path)\n" + GOOD_ADD,
}


def test_honest_programs_pass(gvisor_executor):
    reqs = [stdio(f"io/{k}", v) for k, v in HONEST_IO.items()]
    for k, v in HONEST_FN.items():
        reqs += [he(f"he/{k}", v), asserts(f"as/{k}", v), call(f"call/{k}", v)]
    reqs.append(asserts("as/userlist_value", "from collections import UserList\ndef add(a, b):\n    return UserList([a, b])\n",
                        ["assert add(1, 2) == [1, 2]"]))
    for r in gvisor_executor.run(reqs):
        assert r.status == "passed", (r.id, r.status, r.error_type, r.error_message, r.stderr[-300:])
    [r] = gvisor_executor.run([he("atexit-out", HONEST_FN["atexit_in_module"])])
    assert r.stdout == "bye\n"


def test_unencodable_value_is_a_documented_error(gvisor_executor):
    prog = "from collections import deque\ndef add(a, b):\n    return deque([a + b])\n"
    [r] = gvisor_executor.run([he("deque", prog)])
    assert (r.status, r.error_type, r.tests_passed) == ("error", "UnencodableValue", 0)


@pytest.mark.parametrize("value", ["float('nan')", "float('-inf')", "(1, [2])", "{1: 'a', '1': b'x'}",
                                   "frozenset({(1, 2)})", "-0.0", "10 ** 300", "{True: None}", "complex(1, -0.0)",
                                   "(int, str)"])
def test_values_cross_exactly(process_executor, value):
    # types are preserved: the judge sees the same value a local run would (repr compares NaN, -0.0, keys)
    prog = f"def add(a, b):\n    return {value}\n"
    lines = [f"import math\nv = add(0, 0)\nassert repr(v) == repr({value}) and type(v) is type({value})"]
    [r] = process_executor.run([asserts("v", prog, lines)])
    assert r.status == "passed", (r.error_type, r.error_message)


def test_program_objects_and_builtin_named_functions_work_from_the_tests(process_executor):
    # MBPP shapes: the function under test named like a builtin (called by every assert), objects of
    # the program built and linked by the test's setup (attributes set remotely), a type as argument.
    tree = ("class Node:\n    def __init__(self, v):\n        self.v = v\n        self.left = None\n"
            "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n")
    reqs = [asserts("sum", "def sum(a, b):\n    return a * b\n", ["assert sum(2, 3) == 6", "assert sum(1, 1) == 1"]),
            asserts("tree", tree, ["assert depth(root) == 2", "assert root.left.v == 2"]),
            asserts("types", "def keep(xs, t):\n    return [x for x in xs if not isinstance(x, t)]\n",
                    ["assert keep([1, 'a', 2.5], int) == ['a', 2.5]"])]
    reqs[1]["test"]["setup"] = "root = Node(1)\nroot.left = Node(2)\n"
    for r in process_executor.run(reqs):
        assert r.status == "passed", (r.id, r.error_type, r.error_message)


def test_test_code_that_loops_on_a_strange_value_is_a_timeout(gvisor_executor):
    # The test code runs in the judge; a value that makes it loop is stopped at the request's limit.
    loop = asserts("loop", "def add(a, b):\n    return a - b\n", ["x = add(1, 2)\nwhile x != 3:\n    pass"], timeout_s=1.5)
    r, good = gvisor_executor.run([loop, GOOD["asserts"]])
    assert (r.status, r.error_type, r.tests_passed) == ("timeout", "Timeout", 0), (r.status, r.error_message)
    assert r.error_message == "wall-clock limit of 1.5s exceeded"    # the same text as a program that loops
    assert good.status == "passed"


# --- names the program reports, and what it sends before its tests (red-team round of 2026-12-05) ---------
# The program's process patches its own reporter so that its names include `__builtins__`: the test code would
# then look up abs/range/sorted/all in the program's dict (callbacks into the program, or the judge's `bool`).
INJECT_BUILTINS = (
    "import sys\n"
    "_m = sys.modules.get('program') or sys.modules['sandbox.program']\n"
    "_orig = _m._Program._describe\n"
    "def _zero(*a, **k):\n    return 0\n"
    "def _empty(*a, **k):\n    return []\n"
    "_FAKE = {'abs': _zero, 'range': _empty, 'zip': _empty, 'sorted': _zero, 'set': _zero, 'all': bool,\n"
    "         'any': bool, 'len': _zero, 'isinstance': lambda *a: True}\n"
    "def _describe(self, ns):\n"
    "    out = _orig(self, ns)\n"
    "    out['__builtins__'] = ('value', _FAKE)\n"
    "    return out\n"
    "_m._Program._describe = _describe\n" + mark("builtins") + WRONG)
BUILTIN_TESTS = ["assert abs(add(1.5, 2.0) - 3.5) < 1e-6",
                 "for a in range(5):\n    assert add(a, 1) == a + 1",
                 "assert sorted([add(1, 2), add(0, 0)]) == sorted([0, 3])",
                 "assert all([add(1, 2) == 3, add(2, 2) == 4])"]


def test_reported_names_cannot_replace_the_test_code_builtins(gvisor_executor):
    he_test = "def check(candidate):\n" + "".join(
        "    " + line.replace("add(", "candidate(").replace("\n", "\n    ") + "\n" for line in BUILTIN_TESTS)
    reqs = [he("inject/he", INJECT_BUILTINS, he_test), asserts("inject/as", INJECT_BUILTINS, BUILTIN_TESTS),
            he("honest/he", GOOD_ADD, he_test), asserts("honest/as", GOOD_ADD, BUILTIN_TESTS)]
    got = _run(gvisor_executor, reqs)
    for rid in ("inject/he", "inject/as"):
        r = got[rid]
        assert REACHED in r.stderr, (rid, r.status, r.error_message, r.stderr[-300:])
        assert (r.status, r.tests_passed) == ("failed", 0), (rid, r.status, r.error_type, r.error_message)
    assert got["honest/he"].status == got["honest/as"].status == "passed"


def test_a_programs_own_math_is_not_the_tests_math(gvisor_executor):
    # MBPP asserts use `math` without importing it (the reference solution did). A program that binds its own
    # `math` with a lenient isclose would pass a plain run; here the test's `math` is the standard library's.
    test = ["assert math.isclose(area(2), 12.566, rel_tol=0.001)"]
    fake = "class math:\n    @staticmethod\n    def isclose(*a, **k):\n        return True\ndef area(r):\n    return 0\n"
    honest = "import math\ndef area(r):\n    return math.pi * r * r\n"
    bad, good = gvisor_executor.run([asserts("fake-math", fake, test), asserts("real-math", honest, test)])
    assert (bad.status, bad.error_type) == ("failed", "AssertionError"), (bad.status, bad.error_message)
    assert good.status == "passed", (good.error_type, good.error_message)


def test_program_objects_in_module_values_neither_crash_nor_pass(gvisor_executor):
    # A module-level dict keyed by the program's own objects crosses as opaque handles (hashed by identity in the
    # judge): honest programs keyed by an Enum or a frozen dataclass pass, and a wrong one fails, on every kind;
    # before, hashing a handle escaped the decoder and the request ended as sandbox_error.
    wrong = "class K:\n    pass\nTABLE = {K(): 1}\n" + WRONG
    enum = ("from enum import Enum\nclass Color(Enum):\n    RED = 1\n    BLUE = 2\n"
            "NAMES = {Color.RED: 'red', Color.BLUE: 'blue'}\n" + GOOD_ADD)
    frozen = ("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n    x: int\nORIGIN = {P(0)}\n"
              + GOOD_ADD)
    reqs = []
    for name, prog in (("wrong", wrong), ("enum", enum), ("frozen", frozen)):
        reqs += [he(f"{name}/he", prog), asserts(f"{name}/as", prog), call(f"{name}/call", prog)]
    for r in gvisor_executor.run(reqs):
        want = "failed" if r.id.startswith("wrong") else "passed"
        assert r.status == want, (r.id, r.status, r.error_type, r.error_message)


def test_call_kind_solution_that_cannot_be_built_is_an_error(gvisor_executor):
    reqs = [call("init-raises", "class Solution:\n    def __init__(self):\n        raise ValueError('no')\n"
                                "    def add(self, a, b):\n        return a + b\n"),
            call("no-method", "class Solution:\n    def sub(self, a, b):\n        return a - b\n"),
            call("method", "class Solution:\n    def add(self, a, b):\n        return a + b\n")]
    got = _run(gvisor_executor, reqs)
    assert (got["init-raises"].status, got["init-raises"].error_type) == ("error", "ValueError")
    assert (got["no-method"].status, got["no-method"].error_type) == ("error", "AttributeError")
    assert got["method"].status == "passed"


COLLIDING_LOADED = (
    "import json, os, struct\n"
    "M = 2 ** 61 - 1\n"   # ints k * M all hash to 0: decoding them as a set is quadratic
    "names = ['d', ['add', ['t', 'value', ['s'] + [k * M for k in range(1, 30001)]]]]\n"
    "b = json.dumps(['d', ['t', 'loaded'], ['names', names]]).encode()\n"
    "data = memoryview(struct.pack('>I', len(b)) + b)\n"
    + mark("collide") +
    "while data:\n    data = data[os.write(3, data):]\n"
    "os._exit(0)\n")


def test_colliding_hashes_are_refused_not_hashed(gvisor_executor):
    # 30,000 keys sharing one hash cost the old decoder ~10 s of judge time before the test alarm was armed
    # (ending as sandbox_error after the host's hang check); now the decoder refuses them at the 65th.
    r, good = gvisor_executor.run([he("collide", COLLIDING_LOADED), GOOD["humaneval"]])
    assert REACHED in r.stderr, (r.status, r.error_message, r.stderr[-300:])
    assert (r.status, r.error_type) == ("error", "ProtocolError"), (r.status, r.error_type, r.error_message)
    assert good.status == "passed"


def test_codec_bounds_keys_sharing_one_hash():
    from sandbox import codec
    m = 2 ** 61 - 1
    for value in ({k * m for k in range(1, 66)}, {k * m: 0 for k in range(1, 66)},
                  frozenset((k * m, 0) for k in range(1, 66))):
        with pytest.raises(codec.CodecError, match="share one hash"):
            codec.decode(codec.encode(value))
    ok = {k * m for k in range(1, 65)} | {-1, -2} | set(range(1, 1000))   # 64 share 0; -1 and -2 share -2
    assert codec.decode(codec.encode(ok)) == ok
    assert codec.decode(codec.encode({-1: "a", -2: "b"})) == {-1: "a", -2: "b"}


def test_honest_programs_the_red_team_found_misjudged(gvisor_executor):
    # __file__ exists as in `python program.py`; module-level values too large or too deep to cross no longer
    # break the program's report (the tests call functions, not those values).
    deep = "DEEP = []\nfor _ in range(300):\n    DEEP = [DEEP]\n"
    reqs = [stdio("file", "import os\nname = os.path.basename(__file__)\na, b = map(int, input().split())\n"
                          "print(a + b)\n"),
            he("big-module-int", "BIG = 2 ** 20000\n" + GOOD_ADD), asserts("deep-module-value", deep + GOOD_ADD),
            # (its limit is generous: 1.3 s of a quiet machine's time go into building and sending the table)
            call("big-table", "TABLE = list(range(2 * 10 ** 6))\n" + GOOD_ADD, timeout_s=30.0)]
    for r in gvisor_executor.run(reqs):
        assert r.status == "passed", (r.id, r.status, r.error_type, r.error_message)


def _local_passes(source: str) -> bool:
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", source], capture_output=True).returncode == 0


def test_recursion_limit_is_a_local_runs(gvisor_executor):
    # The harness's own frames under the program do not count: the deepest recursion that passes
    # `python program.py` passes here, and one more level fails in both (asserts and stdio kinds).
    depth = "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
    deepest = max(n for n in range(990, 1001) if _local_passes(depth + f"assert depth({n}) == {n}\n"))
    deepest_io = max(n for n in range(990, 1001) if _local_passes(depth + f"print(depth({n}))\n"))
    reqs = []
    for n in (deepest, deepest + 1):
        reqs.append(asserts(f"as/{n}", depth, [f"assert depth({n}) == {n}"]))
    for n in (deepest_io, deepest_io + 1):
        reqs.append({"id": f"io/{n}", "solution": depth + f"print(depth({n}))\n", "timeout_s": 4.0,
                     "test": {"kind": "stdio", "cases": [{"input": "", "output": f"{n}\n"}]}})
    got = _run(gvisor_executor, reqs)
    assert got[f"as/{deepest}"].status == got[f"io/{deepest_io}"].status == "passed"
    for rid in (f"as/{deepest + 1}", f"io/{deepest_io + 1}"):
        assert (got[rid].status, got[rid].error_type) == ("error", "RecursionError"), (rid, got[rid].status)


ITER_RETURNS = {  # name -> (body of add(a, b), an assert on it); each judged as a plain local run judges it
    "generator": ("return (x * 2 for x in range(a, b))", "assert list(add(0, 3)) == [0, 2, 4]"),
    "map": ("return map(str, range(a, b))", "assert sorted(add(0, 2)) == ['0', '1']"),
    "zip_dict": ("return zip(range(a), range(b))", "assert dict(add(2, 2)) == {0: 0, 1: 1}"),
    "reversed": ("return reversed([a, b])", "assert list(add(1, 2)) == [2, 1]"),
    "range": ("return range(a, b)", "assert add(1, 4) == range(1, 4) and len(add(1, 4)) == 3"),
    "keys": ("return {a: 0, b: 1}.keys()", "assert add(1, 2) == {1, 2} and add(1, 2) & {2} == {2}"),
    "values": ("return {a: 5, b: 6}.values()", "assert sorted(add(1, 2)) == [5, 6]"),
    "items": ("return {a: b}.items()", "assert add(1, 2) == {(1, 2)}"),
    "generator_vs_list": ("return (x for x in [a, b])", "assert add(1, 2) == [1, 2]"),        # fails locally too
    "values_vs_list": ("return {a: 1}.values()", "assert add(1, 2) == [1]"),                # fails locally too
    "generator_raises": ("yield a\n    raise ValueError('late')", "assert list(add(1, 2)) == [1]"),  # error locally
}


@pytest.mark.parametrize("name", sorted(ITER_RETURNS))
def test_iterators_ranges_and_views_cross_as_a_local_run_sees_them(gvisor_executor, name):
    body, line = ITER_RETURNS[name]
    prog = f"def add(a, b):\n    {body}\n"
    [r] = gvisor_executor.run([asserts(name, prog, [line])])
    import subprocess
    import sys
    local = subprocess.run([sys.executable, "-c", prog + line + "\n"], capture_output=True, text=True)
    want = ("passed", None) if local.returncode == 0 else (
        ("failed", "AssertionError") if "AssertionError" in local.stderr else ("error", "ValueError"))
    assert (r.status, r.error_type) == want, (name, r.status, r.error_type, r.error_message, local.stderr[-200:])


# --- red-team round 2: a program must not be able to end its request as sandbox_error (which scores better
# than `error` or `failed`, and costs two sandbox restarts), nor an honest one be judged otherwise than locally
RAW_FRAME = "import json, os, struct\ndef _raw(tree):\n    b = json.dumps(tree).encode()\n" \
            "    os.write(3, struct.pack('>I', len(b)) + b)\n"
NO_SANDBOX_ERROR = {  # name -> program: each is a wrong `add`, so every kind must fail or err, never crash
    "module_claim_venv_main": "import types\nm = types.ModuleType('venv.__main__')\n" + mark("venv") + WRONG,
    "module_claim_unittest_main": "import types\nm = types.ModuleType('unittest.__main__')\n" + mark("ut") + WRONG,
    "handle_as_message_type": RAW_FRAME + mark("handle") + "_raw(['d', ['t', ['h', 1, 'object']]])\n"
                              "import time\ntime.sleep(5)\n" + WRONG,
    "claimed_trace_of_wrong_types": RAW_FRAME + mark("trace") + "import atexit\natexit.register(lambda: _raw("
                                    "['d', ['t', 'done'], ['trace', ['d', ['coverage', ['d']], ['events', ['l', "
                                    "['b', '78']]], ['events_total', 'x'], ['exception', ['s', 1, 2]]]]]))\n" + WRONG,
}


def test_programs_cannot_end_their_request_as_sandbox_error(gvisor_executor):
    reqs = []
    for name, prog in NO_SANDBOX_ERROR.items():
        reqs += [he(f"{name}/he", prog), asserts(f"{name}/as", prog, trace=True), call(f"{name}/call", prog)]
    reqs.append(asserts("object-as-assert-message", "def add(a, b):\n    return object()\n",
                        ["r = add(1, 2)\nassert isinstance(r, int), r"]))
    reqs.append(GOOD["humaneval"])
    got = _run(gvisor_executor, reqs)
    for rid, r in got.items():
        if rid != "good-he":
            assert r.status in ("failed", "error"), (rid, r.status, r.error_type, r.error_message)
    for name in NO_SANDBOX_ERROR:
        assert REACHED in got[f"{name}/as"].stderr, (name, got[f"{name}/as"].stderr[-300:])
    assert got["object-as-assert-message"].error_type == "AssertionError"
    assert got["good-he"].status == "passed"


def test_claimed_traces_of_the_wrong_shape_are_dropped(gvisor_executor):
    # stdio: the program's own "done" report carries a trace with bytes events and a str events_total
    prog = (RAW_FRAME + "s = input()\nprint(int(s) * 2)\nimport sys\nsys.stdout.flush()\n"
            "_raw(['d', ['t', 'done'], ['trace', ['d', ['coverage', ['d']], ['events', ['l', ['b', '78']]], "
            "['events_total', 'x'], ['exception', None], ['truncated', False]]]])\nos._exit(0)\n")
    req = {"id": "io", "solution": prog, "timeout_s": 4.0, "trace": True,
           "test": {"kind": "stdio", "cases": [{"input": "1\n", "output": "2\n"}, {"input": "2\n", "output": "4\n"}]}}
    [r] = gvisor_executor.run([req])
    assert r.status == "passed", (r.status, r.error_type, r.error_message)
    assert r.trace is None or isinstance(r.trace.get("events"), list)


def test_honest_programs_round_two(gvisor_executor):
    stateful = "calls = [0]\ndef f(x):\n    calls[0] += 1\n    return calls[0]\n"
    reqs = [
        # `1 > 2 > f(0)` never calls f: the judge must not call it ahead either
        {"id": "chained", "solution": stateful, "timeout_s": 4.0,
         "test": {"kind": "asserts", "asserts": ["assert not 1 > 2 > f(0)", "assert f(1) == 1"]}},
        # mutation of keyword arguments, and of arguments of a call that then raised, comes back
        {"id": "kwarg-mutation", "solution": "def f(a):\n    a.sort()\n", "timeout_s": 4.0,
         "test": {"kind": "asserts", "setup": "x = [3, 1, 2]", "asserts": ["f(a=x)\nassert x == [1, 2, 3]"]}},
        {"id": "mutate-then-raise", "solution": "def f(a):\n    a.sort()\n    raise ValueError('done')\n",
         "timeout_s": 4.0, "test": {"kind": "asserts", "setup": "x = [3, 1, 2]",
                                    "asserts": ["try:\n    f(x)\nexcept ValueError:\n    pass\nassert x == [1, 2, 3]"]}},
        # a program that closes its own stdout exits 0, as under CPython
        stdio("stdout-closed", "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.stdout.close()\n"),
        # tracing a program that holds a 400k-item set costs no more than a few reprs of 8 items
        {"id": "big-set-traced", "trace": True, "timeout_s": 4.0,
         "solution": "n = int(input())\nseen = set(map(str, range(n)))\ntotal = 0\nfor k in range(60):\n"
                     "    total += len(seen) + k\nprint(total)\n",
         "test": {"kind": "stdio", "cases": [{"input": "400000\n", "output": f"{60 * 400000 + 1770}\n"}]}},
        he("name", GOOD_ADD, "def check(candidate):\n    assert candidate.__name__ == 'add'\n"),
    ]
    for r in gvisor_executor.run(reqs):
        assert r.status == "passed", (r.id, r.status, r.error_type, r.error_message)


def test_traced_recursion_limit_is_the_untraced_one(gvisor_executor):
    depth = "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
    deepest = max(n for n in range(990, 1001) if _local_passes(depth + f"assert depth({n}) == {n}\n"))
    reqs = [asserts(f"{n}/{trace}", depth, [f"assert depth({n}) == {n}"], trace=trace)
            for n in (deepest, deepest + 1) for trace in (False, True)]
    got = _run(gvisor_executor, reqs)
    assert [got[f"{deepest}/{t}"].status for t in (False, True)] == ["passed", "passed"]
    assert [got[f"{deepest + 1}/{t}"].error_type for t in (False, True)] == ["RecursionError", "RecursionError"]


# --- red-team round 3: what leaves the sandbox must be safe to render and to log ------------------------
FORGED_COVERAGE = (
    "import gc, sys\n"
    "def add(a, b):\n"
    "    for o in gc.get_objects():\n"
    "        if type(o).__name__ == 'Tracer':\n"
    "            o.to_dict = lambda: {'coverage': {'\\u00b2': 10 ** 9, '9' * 5000: 1}, 'events': [],\n"
    "                                 'events_total': 0, 'exception': None, 'truncated': False}\n"
    "    sys.settrace(None)\n" + "    " + mark("coverage").replace("\n", "\n    ").rstrip() + "\n"
    "    while True:\n        pass\n")


def test_results_carry_only_line_numbers_and_valid_text(gvisor_executor):
    reqs = [asserts("coverage", FORGED_COVERAGE, ["assert add(1, 2) == 3"], trace=True, timeout_s=1.5),
            asserts("surrogate", "def add(a, b):\n    raise ValueError('bad \\ud800 \\udfff end')\n", trace=True)]
    got = _run(gvisor_executor, reqs)
    cov = got["coverage"]
    assert REACHED in cov.stderr and cov.status == "timeout", (cov.status, cov.stderr[-300:])
    assert cov.trace is None or all(k.isascii() and k.isdigit() and len(k) <= 7 for k in cov.trace["coverage"])
    sur = got["surrogate"]
    assert (sur.status, sur.error_type) == ("error", "ValueError")
    assert sur.error_message == "bad \ufffd \ufffd end"
    sur.error_message.encode("utf-8")                   # strict: what a UTF-8 writer (TensorBoard, JSONL) takes
    json_text = json.dumps(sur.to_dict(), ensure_ascii=False)
    json_text.encode("utf-8")


def test_programs_of_any_size_run(gvisor_executor):
    # a spawn spec past one datagram (~208 KiB under gVisor) was sandbox_error; now the source goes by file
    pad = "#" + "x" * (600 << 10) + "\n"
    prog = "import os\nassert not os.path.exists(" + repr(".ieta-solution") + ")\n" + pad + GOOD_ADD
    r, wrong = gvisor_executor.run([asserts("big", prog), asserts("big-wrong", pad + WRONG)])
    assert r.status == "passed", (r.status, r.error_type, r.error_message)
    assert (wrong.status, wrong.tests_passed) == ("failed", 0)


def test_test_code_that_raises_base_exceptions_is_its_cases_error(gvisor_executor):
    reqs = [asserts(f"raise-{name}", GOOD_ADD, [f"raise {name}", "assert add(1, 2) == 3"])
            for name in ("SystemExit(0)", "KeyboardInterrupt", "BaseException('x')", "GeneratorExit")]
    for r in gvisor_executor.run(reqs):
        assert (r.status, r.tests_passed, r.tests_total) == ("error", 1, 2), (r.id, r.status, r.error_message)


def test_test_code_that_does_not_compile_is_a_request_error():
    from sandbox import RequestError
    from sandbox.schema import parse_request
    bad = [{"kind": "asserts", "asserts": ["assert add(1, 2) ==="]},
           {"kind": "asserts", "asserts": ["assert add(1, 2) == 3"], "setup": "x = ("},
           {"kind": "call", "fn_name": "not an ident", "cases": [{"args": [], "expected": 1}]},
           {"kind": "humaneval", "test": "def check(candidate):\n    pass\n", "entry_point": ""}]
    for test in bad:
        with pytest.raises(RequestError):
            parse_request({"id": "x", "solution": GOOD_ADD, "test": test})


def _raises_test(expr: str, caught: str, then: str = "pass") -> str:
    return f"try:\n    {expr}\n    assert False\nexcept {caught} as e:\n    {then}"


HONEST_ROUND_FOUR = {
    # the program's exceptions keep their builtin base class, their args, and its own classes' names
    "own-subclass-as-ValueError": ("class InvalidInput(ValueError):\n    pass\n\ndef add(a, b):\n"
                                   "    if a < 0:\n        raise InvalidInput('negative')\n    return a + b\n",
                                   [_raises_test("add(-1, 2)", "ValueError")]),
    "own-class-by-name": ("class InvalidInput(ValueError):\n    pass\n\ndef add(a, b):\n"
                          "    raise InvalidInput('negative')\n", [_raises_test("add(-1, 2)", "InvalidInput")]),
    "json-error-as-ValueError": ("import json\n\ndef add(a, b):\n    return json.loads(a)\n",
                                 [_raises_test("add('{bad', 0)", "ValueError")]),
    "unicode-decode-error": ("def add(a, b):\n    return a.decode('utf-8')\n",
                             [_raises_test("add(b'\\xff', 0)", "UnicodeDecodeError", "assert e.start == 0")]),
    "keyerror-args": ("def add(a, b):\n    raise KeyError(a)\n",
                      [_raises_test("add('k', 0)", "KeyError", "assert str(e) == \"'k'\" and e.args == ('k',)")]),
    # a str-mixin Enum is the str it holds (its __str__ says 'Color.RED'), an int subclass the int it holds
    "str-enum": ("import enum\n\nclass Color(str, enum.Enum):\n    RED = 'red'\n\ndef add(a, b):\n    return Color.RED\n",
                 ["assert add(1, 2) == 'red'"]),
    "int-subclass-data": ("class I(int):\n    def __int__(self):\n        return 7\n\ndef add(a, b):\n    return I(3)\n",
                          ["assert add(1, 2) == 3"]),
    # a program object crosses as one proxy, however often: `is` holds
    "identity": ("MISSING = object()\n\ndef add(a, b):\n    return MISSING\n", ["assert add(1, 2) is MISSING"]),
    # its namespace is a registered module: pickle and typing find its classes
    "pickle-own-class": ("import pickle\n\nclass P:\n    def __init__(self, v):\n        self.v = v\n\n"
                         "def add(a, b):\n    return pickle.loads(pickle.dumps(P(a + b))).v\n", ["assert add(1, 2) == 3"]),
    "type-hints": ("from __future__ import annotations\nimport typing\n\ndef add(a: int, b: int) -> int:\n"
                   "    return len(typing.get_type_hints(add))\n", ["assert add(1, 2) == 3"]),
    # large values cross both ways: ints past CPython's 4300-digit str limit, a million items
    "big-int": ("import math\n\ndef add(a, b):\n    return math.factorial(a)\n", ["assert add(2000, 0) > 10 ** 5000"]),
    "million-items": ("def add(a, b):\n    return list(range(len(a)))\n",
                      ["assert add(list(range(10 ** 6)), 0) == list(range(10 ** 6))"]),
}


CHECK_LOCALS = ("N = 5\n\ndef expected(x):\n    return x + N - 3\n\ndef check(candidate):\n    N = 100\n"
                "    assert candidate(N, 1) == 101\n    ys = [1, 2]\n    assert all(candidate(y, 0) == y for y in ys)\n"
                "    assert candidate(1, 2) == expected(1)\n")


def test_honest_programs_round_four(gvisor_executor):
    # What crosses is checked here, not how fast: a million items each way take 1.8 s of a quiet machine, too
    # close to a 4 s limit on a loaded CI host, so that request gets a generous one.
    reqs = [asserts(name, program, lines, **({"timeout_s": 30.0} if name == "million-items" else {}))
            for name, (program, lines) in HONEST_ROUND_FOUR.items()]
    reqs += [{"id": "dev-stdin-stdout", "timeout_s": 4.0,
              "solution": "a, b = map(int, open('/dev/stdin').read().split())\nwith open('/dev/stdout', 'w') as out:\n"
                          "    out.write(f'{a + b}\\n')\n",
              "test": {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}]}},
             # check()'s locals are its own: `N = 100` there leaves the module's N, which a helper reads, alone
             he("check-locals", GOOD_ADD, CHECK_LOCALS),
             {"id": "str-enum-call", "timeout_s": 4.0, "solution": HONEST_ROUND_FOUR["str-enum"][0],
              "test": {"kind": "call", "fn_name": "add", "cases": [{"args": [1, 2], "expected": "red"}]}}]
    for name, (program, lines) in HONEST_ROUND_FOUR.items():  # each passes a plain local run too
        assert _local_passes(program + "\n" + "\n".join(lines)), name
    assert _local_passes(GOOD_ADD + CHECK_LOCALS + "check(add)\n")
    for r in gvisor_executor.run(reqs):
        assert r.status == "passed", (r.id, r.status, r.error_type, r.error_message)


def test_a_test_argument_too_large_to_send_is_an_error_not_a_sandbox_error(gvisor_executor_1g):
    big = asserts("big-arg", "def add(a, b):\n    return len(a)\n", ["assert add('ab' * (20 * 10 ** 6), 0) == 4 * 10 ** 7"],
                  memory_mb=1024)
    r, after = gvisor_executor_1g.run([big, asserts("after", GOOD_ADD)])
    assert (r.status, r.error_type) == ("error", "UnencodableValue") and "too large" in r.error_message
    assert after.status == "passed"


def _check_locally(honest: dict, wrong: dict) -> None:
    """A plain local run of each program with its assert lines passes the honest ones and fails the wrong ones."""
    for name, (program, lines) in honest.items():
        assert _local_passes(program + "\n" + "\n".join(lines)), name
    for name, (program, lines) in wrong.items():
        assert not _local_passes(program + "\n" + "\n".join(lines)), name


FUNDS = ("class InsufficientFunds(Exception):\n    def __init__(self, need):\n        self.need = need\n\n"
         "    def __str__(self):\n        return f'need {self.need} more'\n\n"
         "def add(a, b):\n    if b > a:\n        raise InsufficientFunds(b - a)\n    return a - b\n")


def test_a_program_exception_keeps_its_own_str_and_attributes(gvisor_executor):
    # Red team round 6: the stand-in showed str() of its args and had none of its attributes, so an honest program
    # failed, and one whose __str__ says something else than its args passed a test of its message.
    honest = {"own-str": (FUNDS, [_raises_test("add(5, 8)", "InsufficientFunds", "assert str(e) == 'need 3 more'")]),
              "own-attribute": (FUNDS, [_raises_test("add(5, 8)", "InsufficientFunds", "assert e.need == 3")]),
              "exit-code": ("def add(a, b):\n    raise SystemExit(3)\n",
                            [_raises_test("add(1, 2)", "SystemExit", "assert e.code == 3 and str(e) == '3'")])}
    wrong = ("class E(ValueError):\n    def __str__(self):\n        return 'wrong message'\n\n"
             "def add(a, b):\n    raise E('invalid literal: ' + a)\n",
             [_raises_test("add('x', 0)", "ValueError", "assert str(e) == 'invalid literal: x'")])
    _check_locally(honest, {"wrong": wrong})
    results = gvisor_executor.run([asserts(n, p, lines) for n, (p, lines) in honest.items()] + [asserts("wrong-str", *wrong)])
    assert [(r.id, r.status) for r in results] == [(n, "passed") for n in honest] + [("wrong-str", "failed")]


def test_an_immutable_subclass_value_keeps_its_identity(gvisor_executor):
    # Red team round 6: Enum members crossed as bare data, so `pick() is Color.RED` failed for an honest program and
    # passed for one returning a plain 1 (the judge's small-int cache made the two 1s one object).
    intenum = "import enum\n\nclass Color(enum.IntEnum):\n    RED = {red}\n\ndef add(a, b):\n    return {ret}\n"
    strenum = "import enum\n\nclass Color(str, enum.Enum):\n    RED = 'red'\n\ndef add(a, b):\n    return Color.RED\n"
    honest = {"intenum-is": (intenum.format(red=1000, ret="Color.RED"),
                             ["assert add(1, 2) is Color.RED", "assert add(1, 2) + 1 == 1001",
                              "assert type(add(1, 2)).__name__ == 'Color'"]),
              "strenum-is": (strenum, ["assert add(1, 2) is Color.RED", "assert add(1, 2) == 'red'"]),
              "enum-argument": (intenum.format(red=1000, ret="a + b"), ["assert add(Color.RED, 1) == 1001"])}
    wrong = (intenum.format(red=1, ret="1"), ["assert add(1, 2) is Color.RED"])
    _check_locally(honest, {"wrong": wrong})
    results = gvisor_executor.run([asserts(n, p, lines) for n, (p, lines) in honest.items()] + [asserts("plain-1", *wrong)])
    assert [(r.id, r.status) for r in results] == [(n, "passed") for n in honest] + [("plain-1", "failed")]


def test_round_seven_stand_ins_hold_no_stale_value_and_no_borrowed_attribute(gvisor_executor):
    # Red team round 7, on the round-6 fixes: a namedtuple crossing as one remembered object showed its first value
    # after the program changed a list in it; a failing generator inside it arrived empty; a str-subclass dict key
    # was shown as repr in a `call` result; an exception's instance dict overrode the class's own `args`; and a
    # test's subclass of a program exception class recursed in str().
    grows = ("from collections import namedtuple\n\nCfg = namedtuple('Cfg', 'items')\n_c = []\n\n"
             "def add(a, b):\n    if not _c:\n        _c.append(Cfg([]))\n    _c[0].items.append('x')\n    return _c[0]\n")
    rows = ("from collections import namedtuple\n\nR = namedtuple('R', 'rows')\n\ndef add(a, b):\n"
            "    def rows():\n        for part in a.split(';'):\n            yield int(part)\n    return R(rows())\n")
    shadow = "def add(a, b):\n    e = ValueError('bad')\n    e.__dict__['args'] = ['invalid: ' + a]\n    raise e\n"
    own = "class InvalidInput(ValueError):\n    pass\n\ndef add(a, b):\n    raise InvalidInput('negative')\n"
    wrong = {"stale-namedtuple": (grows, ["assert add(1, 2) == (['x'],)", "assert add(1, 2) == (['x'],)"]),
             "drained-generator": (rows, ["assert list(add('1;x', 0)[0]) == []"]),
             "args-shadow": (shadow, [_raises_test("add('x', 0)", "ValueError", "assert e.args == ('invalid: x',)")])}
    honest = {"namedtuple-twice": (grows, ["assert add(1, 2) == (['x'],)", "assert add(1, 2) == (['x', 'x'],)"]),
              "test-subclass": (own, ["class TooBig(InvalidInput):\n    pass\nassert str(TooBig('big')) == 'big'"])}
    _check_locally(honest, wrong)
    strkey = {"id": "str-subclass-key", "timeout_s": 4.0,
              "solution": "class S(str):\n    pass\n\ndef add(a, b):\n    return {S('a'): 1}\n",
              "test": {"kind": "call", "fn_name": "add", "cases": [{"args": [1, 2], "expected": {"a": 1}}]}}
    reqs = [asserts(n, p, lines) for n, (p, lines) in list(wrong.items()) + list(honest.items())] + [strkey]
    got = {r.id: r.status for r in gvisor_executor.run(reqs)}
    assert all(got[n] != "passed" for n in wrong), got
    assert all(got[n] == "passed" for n in [*honest, "str-subclass-key"]), got


SURVIVOR = """
import ctypes, os, signal, threading, time
parent = os.getpid()
child = os.fork()
if child == 0:
    os.setsid()
    os.closerange(0, 64)
    def sabotage():  # kill every later program (bounded: 30 s)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            for n in os.listdir('/proc'):
                if n.isdigit() and int(n) not in (os.getpid(), parent):
                    try:
                        os.kill(int(n), signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.001)
    threading.Thread(target=sabotage).start()
    ctypes.CDLL(None).syscall(60, 0)  # SYS_exit of the main thread only: /proc says 'Z', its thread runs on
while open(f'/proc/{child}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z':
    time.sleep(0.005)
""" + WRONG

SEES_ALONE = "import os\nSEEN = len([n for n in os.listdir('/proc') if n.isdigit()])\n" + GOOD_ADD


def test_a_process_that_outlives_its_main_thread_does_not_outlive_its_request():
    """A process whose main thread exited reads 'Z' while its other threads run: the cleanup kills it all the same,
    so it cannot kill, starve or watch the programs after it (one sandbox: they all run where it ran)."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed")
    with Executor(backend="gvisor", workers=1, timeout_s=5.0, order="fifo") as ex:
        planted, *after = ex.run([he("plant", SURVIVOR)] + [dict(GOOD[k], id=f"after-{k}") for k in GOOD]
                                 + [asserts("alone", SEES_ALONE, ["assert SEEN == 1"])])  # itself: its own pid namespace
    assert (planted.status, planted.tests_passed) == ("failed", 0)
    assert [(r.id, r.status) for r in after] == [(r.id, "passed") for r in after], [r.error_message for r in after]


CRASH_IN_CALL = {"os._exit": "import os\n        os._exit(0)", "segfault": "import ctypes\n        ctypes.string_at(0)",
                 "sys.exit": "import sys\n        sys.exit(0)", "KeyboardInterrupt": "raise KeyboardInterrupt"}


@pytest.mark.parametrize("how", sorted(CRASH_IN_CALL))
def test_a_program_that_ends_inside_a_call_did_not_raise(gvisor_executor, how):
    """A test that wants an exception (`try: f(-1) except Exception: pass else: fail`) does not get one from a program
    that exits, crashes or raises a BaseException there, as a local run would not."""
    program = f"def add(a, b):\n    if a < 0:\n        {CRASH_IN_CALL[how]}\n    return a + b\n"
    wants_raise = "try:\n    add(-1, 0)\nexcept Exception:\n    pass\nelse:\n    raise AssertionError('must raise')"
    test = "def check(candidate):\n    assert candidate(1, 2) == 3\n" + "\n".join(
        "    " + line for line in wants_raise.replace("add(", "candidate(").split("\n")) + "\n"
    for r in gvisor_executor.run([he(f"he-{how}", program, test), asserts(f"as-{how}", program,
                                                                           ["assert add(1, 2) == 3", wants_raise])]):
        assert r.status == "error" and r.tests_passed == 1, (r.id, r.status, r.error_type, r.tests_passed)


def test_round_five_a_frame_flood_big_ints_and_claimed_classes(gvisor_executor):
    """A program flooding its channel with tiny frames is a ProtocolError at once (the judge decoded them one by one
    from the front of a list: quadratic, past every limit, then `sandbox_error`); a returned int past CPython's
    4300-digit str limit fails its case as any wrong value does."""
    flood = stdio("flood", "import os\nos.write(3, b'\\x00\\x00\\x00\\x010' * 400000)\n" + GOOD["stdio"]["solution"])
    big = {"id": "big-int", "solution": "def add(a, b):\n    return 10 ** 20000\n", "timeout_s": 4.0,
           "test": {"kind": "call", "fn_name": "add", "cases": [{"args": [1, 2], "expected": 3}]}}
    r_flood, r_big, after = gvisor_executor.run([flood, big, GOOD["stdio"]])
    assert (r_flood.status, r_flood.error_type) == ("error", "ProtocolError")
    assert (r_big.status, r_big.error_type) == ("failed", "AssertionError")
    assert after.status == "passed"


def test_claimed_exception_classes_are_bounded():
    """The judge's stand-ins for a program's exception classes: one per (name, base) up to MAX_REMOTE_CLASSES, then
    one per builtin base, so a program claiming classes by the hundred thousand cannot grow the judge without end."""
    from sandbox import judge

    judge._REMOTE_CLASSES.clear()
    classes = [judge._remote_class(f"E{i}", "ValueError") for i in range(3 * judge.MAX_REMOTE_CLASSES)]
    assert len(judge._REMOTE_CLASSES) == judge.MAX_REMOTE_CLASSES + 1
    assert all(issubclass(c, ValueError) and issubclass(c, judge.RemoteError) for c in classes)
    assert judge._remote_class("E0", "ValueError") is classes[0]
    judge._REMOTE_CLASSES.clear()


def test_no_program_finds_the_program_before_it_in_its_memory():
    """Round 8: each spawn spec (the program's source) used to pass through the zygote, into a receive buffer that
    the next spec overwrote only as far as it reached, and every program process is a fork of the zygote. So a short
    program found the end of the previous one's source in its own memory, and passed by running it: in RL, the
    previous program is a sibling sample of the same task. Now the source comes on the program's own channel.
    One sandbox, so that the two run back to back in it; the probe is far shorter than the program before it."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    token, arg = secrets.token_hex(4), secrets.token_hex(4)
    before = he("sibling", "def add(a, b):\n    '''" + "Add two numbers. " * 400 + "'''\n"
                f"    return a + b  # SRC-TOKEN-{token}\n")
    probe = he("probe", MEMORY_SCAN + "def add(a, b):\n    control = scan(rb'ARG-TOKEN-[0-9a-f]{8}')\n"
               "    leaked = scan(rb'SRC-TOKEN-[0-9a-f]{8}')\n    print('" + REACHED + "', control, leaked, flush=True)\n"
               "    return a + b\n", f"def check(candidate):\n    assert candidate('ARG-TOKEN-{arg}', '') == 'ARG-TOKEN-{arg}'\n")
    assert len(probe["solution"]) < len(before["solution"]) // 4
    with Executor(backend="gvisor", workers=1, timeout_s=5.0, memory_mb=256, order="fifo") as ex:
        r_before, r_probe = ex.run([before, probe])
    assert r_before.status == "passed" and r_probe.status == "passed", (r_probe.status, r_probe.error_message)
    (line,) = [ln for ln in r_probe.stdout.splitlines() if ln.startswith(REACHED)]
    control, leaked = map(int, line.split()[1:])
    assert control >= 1 and leaked == 0, (control, leaked)


def test_frames_left_for_the_judge_to_decode_after_the_exit_cost_it_nothing(gvisor_executor):
    """Round 8: a stdio program wrote frames of millions of items to its channel and exited. The judge decoded each
    of them after the exit, with no time limit (about 0.8 s each): `sandbox_error` at will, after the host's hang
    limit. Now only its last frame, its claim, is decoded, within the request's time."""
    flood = stdio("decode-flood", "import struct\npayload = b'[\"l\"' + b',0' * 4194303 + b']'\n"
                  "frame = struct.pack('>I', len(payload)) + payload\nwith open(3, 'wb', closefd=False) as chan:\n"
                  "    for _ in range(10):\n        chan.write(frame)\n" + GOOD["stdio"]["solution"])
    r, after = gvisor_executor.run([flood, GOOD["stdio"]])
    assert r.status == "passed" and r.duration_s < flood["timeout_s"], (r.status, r.error_message, r.duration_s)
    assert after.status == "passed"


def test_an_enum_member_the_test_passes_back_is_the_programs_own(gvisor_executor):
    # Round 8: the judge's stand-in for a program's IntEnum or str Enum member went back to the program as its bare
    # value, so `name_of(Color.RED)` raised AttributeError ('int' has no .name) and `same(S.A) is S.A` failed.
    program = ("import enum\n\nclass Color(enum.IntEnum):\n    RED = 1\n\nclass S(str, enum.Enum):\n    A = 'a'\n\n"
               "def name_of(c):\n    return c.name\n\ndef same(x):\n    return x\n\n"
               "def kind(x):\n    return type(x).__name__\n")
    honest = {"enum-back": (program, ["assert name_of(Color.RED) == 'RED'", "assert same(S.A) is S.A",
                                      "assert kind(same(Color.RED)) == 'Color'", "assert name_of(same(S.A)) == 'A'",
                                      "assert kind(1) == 'int'"])}
    _check_locally(honest, {})
    (r,) = gvisor_executor.run([asserts(n, p, lines) for n, (p, lines) in honest.items()])
    assert (r.status, r.tests_passed) == ("passed", 5), (r.status, r.error_message)


def test_collections_dicts_and_bytearrays_keep_their_type_both_ways(gvisor_executor):
    # Round 8: OrderedDict, Counter and defaultdict crossed as plain dicts, so a wrong OrderedDict order passed
    # (dict equality ignores order), a returned defaultdict raised KeyError for a missing key, and a returned bytearray
    # was an UnencodableValue. Arguments of these types now arrive as themselves, and their changes come back.
    program = ("from collections import Counter, OrderedDict, defaultdict\n\n"
               "def order(pairs):\n    return OrderedDict(pairs)\n\n"
               "def counts(s):\n    c = defaultdict(int)\n    for ch in s:\n        c[ch] += 1\n    return c\n\n"
               "def tally(s):\n    return Counter(s) - Counter('z')\n\n"
               "def raw(s):\n    return bytearray(s, 'ascii')\n\n"
               "def kind(x):\n    return type(x).__name__\n\n"
               "def bump(c):\n    c['a'] += 1\n    c.move_to_end('a') if hasattr(c, 'move_to_end') else None\n")
    lines = ["from collections import Counter, OrderedDict, defaultdict",
             "assert order([('a', 1), ('b', 2)]) == OrderedDict([('a', 1), ('b', 2)])",
             "assert order([('a', 1), ('b', 2)]) != OrderedDict([('b', 2), ('a', 1)])",
             "assert counts('aab')['z'] == 0 and counts('aab') == {'a': 2, 'b': 1}",
             "assert tally('aab') == Counter({'a': 2, 'b': 1, 'c': 0})",
             "assert raw('ab') == b'ab' and type(raw('ab')) is bytearray",
             "assert [kind(OrderedDict()), kind(Counter()), kind(defaultdict(list))] == "
             "['OrderedDict', 'Counter', 'defaultdict']",
             "c = Counter('ab'); bump(c); assert c == Counter('aab')",
             "o = OrderedDict(a=0, b=0); bump(o); assert list(o.items()) == [('b', 0), ('a', 1)]"]
    wrong = program.replace("return OrderedDict(pairs)", "return OrderedDict(reversed(pairs))")
    _check_locally({"collections": (program, lines)}, {"wrong-order": (wrong, lines[:2])})
    r, bad, after = gvisor_executor.run([asserts("collections", program, lines), asserts("wrong-order", wrong, lines[:2]),
                                         GOOD["asserts"]])
    assert (r.status, r.tests_passed) == ("passed", len(lines)), (r.status, r.tests_passed, r.error_message)
    assert (bad.status, bad.tests_passed) == ("failed", 1), (bad.status, bad.error_message)
    assert after.status == "passed"


def test_an_oserror_keeps_its_file_names(gvisor_executor):
    # `open('nope.txt')` raised a FileNotFoundError whose str() lacked the file name in the judge: OSError keeps its
    # file names neither in its args nor in its instance attributes.
    program = "import os\n\ndef read(p):\n    return open(p).read()\n\ndef rename(a, b):\n    os.rename(a, b)\n"
    lines = ["try:\n    read('nope.txt')\nexcept FileNotFoundError as e:\n    assert e.filename == 'nope.txt'\n"
             "    assert str(e) == \"[Errno 2] No such file or directory: 'nope.txt'\"\n"
             "    assert e.args == (2, 'No such file or directory') and e.errno == 2\nelse:\n    assert False",
             "try:\n    rename('a1', 'b1')\nexcept OSError as e:\n    assert (e.filename, e.filename2) == ('a1', 'b1')\n"
             "    assert str(e) == \"[Errno 2] No such file or directory: 'a1' -> 'b1'\"\nelse:\n    assert False"]
    _check_locally({"oserror": (program, lines)}, {})
    (r,) = gvisor_executor.run([asserts("oserror", program, lines)])
    assert (r.status, r.tests_passed) == ("passed", 2), (r.status, r.error_message)


SLOW_FRAMES = ("import os, struct\n"
               "def flood(n):\n    body = ('[\"l\"' + ',[\"l\"]' * 2_000_000 + ']').encode()\n"
               "    frame = struct.pack('>I', len(body)) + body\n    for _ in range(n):\n        v = memoryview(frame)\n"
               "        while v:\n            v = v[os.write(3, v):]\n")


def test_frames_that_are_dear_to_decode_cannot_hold_a_traced_request_past_its_limit(gvisor_executor):
    """Round 9: with `trace`, a program that queued frames of millions of items on its channel and then ran past its
    limit made the judge decode all of them while asking for its trace so far, with no time limit: `sandbox_error`
    at will (the host saw a hung sandbox, twice). Frames sent with the goodbye after the tests were decoded with the
    alarm already off. Each case now ends as the timeout it is, near its limit. (What the judge's decoding takes is
    the judge's, bounded by the codec: the memory watch leaves the judge's own memory out.) A goodbye too dear to
    decode brings no trace, and the program's exit is still waited for: it ended `failed` instead whenever its
    decoding failed before the limit (2 of 4 runs of the sandbox suite here; with a limit of 8 s, always)."""
    late = dict(stdio("dear-late", SLOW_FRAMES + "import time\nflood(4)\ntime.sleep(30)\n", timeout_s=3.0), trace=True)
    bye = dict(he("dear-bye", SLOW_FRAMES + "import sys, time\ncodec = sys.modules['codec']\n_encode = codec.encode\n"
                  "def encode(value, handle=None, drain=True):\n    if type(value) is dict and value.get('t') == 'bye':\n"
                  "        flood(4)\n        time.sleep(30)\n    return _encode(value, handle, drain)\n"
                  "codec.encode = encode\n" + WRONG, timeout_s=3.0), trace=True)
    results = gvisor_executor.run([late, bye, GOOD["stdio"], GOOD["humaneval"]])
    for r in results[:2]:
        assert (r.status, r.error_type) == ("timeout", "Timeout") and r.duration_s < 4.5, (r.id, r.status, r.duration_s)
    assert [r.status for r in results[2:]] == ["passed", "passed"]
    assert not [rid for rid, _ in gvisor_executor.recent_failures if rid.startswith("dear-")]  # no sandbox replaced


def test_call_numbers_start_afresh_in_each_request():
    """Round 9: the number each call carries counted on across requests, so a program learned how many calls the
    programs before it in its sandbox had been made (how far a sibling sample got, where calls stop at a failure)."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    spy = ("import sys\ncodec = sys.modules['codec']\n_decode = codec.decode\nSEEN = []\n"
           "def decode(data, handles=None):\n    msg = _decode(data, handles)\n"
           "    if type(msg) is dict and 'seq' in msg:\n        SEEN.append(msg['seq'])\n    return msg\n"
           "codec.decode = decode\n\ndef add(a, b):\n    print(SEEN, flush=True)\n    return a + b\n")
    with Executor(backend="gvisor", workers=1, timeout_s=5.0, memory_mb=256, order="fifo") as ex:
        first, second = ex.run([he("first", spy), he("second", spy)])
    assert first.status == second.status == "passed"
    assert first.stdout == second.stdout == "[1]\n[1, 2]\n", (first.stdout, second.stdout)


def test_round_nine_honest_programs(gvisor_executor):
    """Round 9: a bytearray argument changed in place did not come back; a copy of a program's Enum member went back
    to the program as its bare value, and the member's `.name`/`.value` were missing in the judge; a call-kind
    result's True/None dict keys were shown as 'True'/'None', where a JSON round trip (APPS's comparison) writes
    'true'/'null'; a test's own message showing a program's lone surrogate made an error_message no UTF-8 writer takes."""
    program = ("import enum\n\nclass C(enum.IntEnum):\n    R = 1\n    G = 2\n\n"
               "def flip(b):\n    b.reverse()\n\ndef name_of(c):\n    return c.name\n\ndef pick(i):\n    return C(i)\n")
    lines = ["import copy\nb = bytearray(b'ab')\nflip(b)\nassert b == bytearray(b'ba')",
             "assert name_of(copy.deepcopy(C.R)) == 'R' and name_of(copy.copy(C.G)) == 'G'",
             "assert pick(1).name == 'R' and pick(2).value == 2 and pick(2) is C.G"]
    _check_locally({"round-nine": (program, lines)}, {})
    keys = {"id": "json-keys", "solution": "def add(a, b):\n    return {True: a, None: b, 1.5: 0}\n", "timeout_s": 4.0,
            "test": {"kind": "call", "fn_name": "add",
                     "cases": [{"args": [1, 2], "expected": {"true": 1, "null": 2, "1.5": 0}}]}}
    surrogate = he("surrogate", "def add(a, b):\n    return '\\udc80'\n",
                   "def check(candidate):\n    r = candidate(1, 2)\n    assert r == 3, f'got {r}'\n")
    r, r_keys, r_sur = gvisor_executor.run([asserts("round-nine", program, lines), keys, surrogate])
    assert (r.status, r.tests_passed) == ("passed", 3), (r.status, r.error_message)
    assert r_keys.status == "passed", r_keys.error_message
    assert (r_sur.status, r_sur.error_message) == ("failed", "got \ufffd")


def test_a_program_learns_nothing_from_the_pids_of_the_programs_before_it():
    """Round 9: pids counted on across the requests of a sandbox, so a program set the next one's pid by starting
    threads, a channel from one sample of a task to the next: with a check() whose calls stop at the first wrong
    answer, the 4th sample of a cheat that computed nothing passed. And the judge's and the zygote's /proc entries
    showed what earlier programs made them do. Each program is now pid 1 of a pid namespace of its own, with a /proc
    of its own."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    look = "import os\nprint(os.getpid(), os.readlink('/proc/self'), sorted(n for n in os.listdir('/proc') if n.isdigit()))\n"
    threads = ("import threading\nts = [threading.Thread(target=int) for _ in range(200)]\nfor t in ts:\n    t.start()\n"
               "for t in ts:\n    t.join()\n")
    reqs = [dict(stdio(f"look-{i}", (threads if i == 1 else "") + look), timeout_s=10.0) for i in range(3)]
    with Executor(backend="gvisor", workers=1, timeout_s=10.0, memory_mb=256, order="fifo") as ex:
        results = ex.run(reqs)
    assert [r.stdout for r in results] == ["1 1 ['1']\n" * 2] * 3, [(r.status, r.stdout) for r in results]  # 2 cases each


def test_claimed_traces_cost_the_judge_little_and_cannot_break_its_result(gvisor_executor):
    """Round 9: a stdio program's last frame claimed a 30 MiB trace of huge ints on an untraced request, and left
    children spinning: the judge serialized the claim (seconds) before bounding it, with the alarm off and the
    children still competing for the CPU, and the host replaced the sandbox as hung (`sandbox_error`). Claimed
    counters of 4300 digits, summed over two cases, made a result no JSON writer takes (`sandbox_error` at once)."""
    burn = ("import os, struct\nh = format((1 << 14200) - 12345, 'x')\n"
            "body = ('[\"d\",[\"t\",\"done\"],[\"trace\",[\"d\",[\"events\",[\"l\"' + (',[\"i\",\"%s\"]' % h) * 5000"
            " + ']]]]]').encode()\n"
            "a, b = map(int, input().split())\nprint(a - b, flush=True)\n"
            "v = memoryview(struct.pack('>I', len(body)) + body)\nwhile v:\n    v = v[os.write(3, v):]\n"
            "for _ in range(8):\n    if os.fork() == 0:\n        while True:\n            pass\nos._exit(0)\n")
    big = ("import sys\ncodec = sys.modules['codec']\n_encode = codec.encode\n"
           "def encode(value, handle=None, drain=True):\n    if type(value) is dict and value.get('t') == 'done':\n"
           "        value = dict(value, trace={'coverage': {}, 'events': [], 'events_total': 9 * 10 ** 4299, "
           "'exception': None})\n    return _encode(value, handle, drain)\ncodec.encode = encode\n" + WRONG_IO)
    reqs = [stdio("burn", burn, timeout_s=6.0), dict(stdio("big-counter", big), trace=True), GOOD["stdio"]]
    r_burn, r_big, after = gvisor_executor.run(reqs)
    assert (r_burn.status, r_burn.error_type) == ("failed", "AssertionError") and r_burn.duration_s < 6.0, \
        (r_burn.status, r_burn.error_message, r_burn.duration_s)
    assert (r_big.status, r_big.error_type, r_big.trace) == ("failed", "AssertionError", None), r_big.status
    assert after.status == "passed"
    assert not [rid for rid, _ in gvisor_executor.recent_failures if rid in ("burn", "big-counter")]


def test_a_check_helper_that_asserts_is_not_a_passed_case(gvisor_executor):
    # Round 9: check() statements holding an assert are its cases; a helper `def t(x, y): assert ...` held one, and its
    # `def` (which asserts nothing when it runs) counted as a passed case: partial credit for any wrong program.
    test = ("def check(candidate):\n    def t(x, y):\n        assert candidate(x, 0) == y\n"
            "    t(1, 1)\n    t(2, 2)\n    assert candidate(0, 0) == 0\n")
    wrong, good = gvisor_executor.run([he("helper-wrong", "def add(a, b):\n    return -1\n", test),
                                       he("helper-good", GOOD_ADD, test)])
    assert (wrong.status, wrong.tests_passed) == ("failed", 0), (wrong.status, wrong.tests_passed, wrong.tests_total)
    assert (good.status, good.tests_passed, good.tests_total) == ("passed", 1, 1)


def test_the_judge_has_the_builtins_site_gives_programs(gvisor_executor):
    # Round 9: `exit`, `quit`, `help`... were no builtins in the judge, so a program's own `def exit` was bound for the
    # test code (a test failing with exit(1) then passed a wrong program), and a test's exit(1) was a NameError.
    test = "def check(candidate):\n    if candidate(1, 2) != 3:\n        exit(1)\n    assert candidate(2, 2) == 4\n"
    plain = "def add(a, b):\n    return 4\n"
    cheat = plain + "\ndef exit(*args):\n    pass\n"  # the test's exit(1) must not become its no-op
    for r in gvisor_executor.run([he("own-exit", cheat, test), he("test-exit", plain, test)]):
        assert (r.status, r.error_type) == ("error", "SystemExit"), (r.id, r.status, r.error_type)


def test_no_network_state_carries_over():
    """Round 10: programs shared the sandbox's network stack, so TCP ports a program left in TIME_WAIT were bits the
    next program read back, seconds and requests later. Each program now has a network namespace of its own."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    write = ("import socket, time\n"
             "for i, bit in enumerate('10110010'):\n"
             "    if bit == '1':\n"
             "        srv = socket.socket()\n        srv.bind(('127.0.0.1', 42000 + i))\n        srv.listen()\n"
             "        c = socket.create_connection(('127.0.0.1', 42000 + i))\n        a, _ = srv.accept()\n"
             "        a.close()\n        time.sleep(0.01)\n        c.close()\n        srv.close()\n"
             "held = 0\nfor i in range(8):\n    s = socket.socket()\n    try:\n        s.bind(('127.0.0.1', 42000 + i))\n"
             "    except OSError:\n        held += 1\n    s.close()\n"
             "print(held)\n")
    read = ("import socket\nout = ''\nfor i in range(8):\n    s = socket.socket()\n    try:\n"
            "        s.bind(('127.0.0.1', 42000 + i))\n        out += '0'\n    except OSError:\n        out += '1'\n"
            "    s.close()\nprint(out)\n")
    one = {"cases": [{"input": "", "output": "x\n"}]}
    reqs = [dict(stdio("write", write), test=dict(kind="stdio", **one)), dict(stdio("read", read), test=dict(kind="stdio", **one))]
    with Executor(backend="gvisor", workers=1, timeout_s=5.0, memory_mb=256, order="fifo") as ex:
        w, r = ex.run(reqs)
    assert w.stdout == "4\n", (w.status, w.stdout, w.stderr)        # 4 ports in TIME_WAIT, seen by the writer itself
    assert r.stdout == "00000000\n", (r.status, r.stdout, r.stderr)        # none by the time the next program looks


FAST_IO = '''import os, sys
from io import BytesIO, IOBase

class FastIO(IOBase):
    newlines = 0

    def __init__(self, file):
        self._fd = file.fileno()
        self.buffer = BytesIO()
        self.writable = "x" in file.mode or "r" not in file.mode
        self.write = self.buffer.write if self.writable else None

    def readline(self):
        while self.newlines == 0:
            b = os.read(self._fd, max(os.fstat(self._fd).st_size, 8192))
            self.newlines = b.count(b"\\n") + (not b)
            ptr = self.buffer.tell()
            self.buffer.seek(0, 2), self.buffer.write(b), self.buffer.seek(ptr)
        self.newlines -= 1
        return self.buffer.readline()

    def flush(self):
        if self.writable:
            os.write(self._fd, self.buffer.getvalue())
            self.buffer.truncate(0), self.buffer.seek(0)

class IOWrapper(IOBase):
    def __init__(self, file):
        self.buffer = FastIO(file)
        self.flush = self.buffer.flush
        self.writable = self.buffer.writable
        self.write = lambda s: self.buffer.write(s.encode("ascii"))
        self.readline = lambda: self.buffer.readline().decode("ascii")

sys.stdin, sys.stdout = IOWrapper(sys.stdin), IOWrapper(sys.stdout)
input = lambda: sys.stdin.readline().rstrip("\\r\\n")
a, b = map(int, input().split())
print(a + b)
'''


def test_round_ten_honest_stdio_programs(executor):
    """Round 10 (fidelity): the competitive-programming FastIO template lost its output and exited 120, because the
    program's namespace was cleared before the exit flushed its sys.stdout (whose flush uses `os`); a stdout object
    without `closed` failed its flush; the interpreter's own stdout was never flushed once sys.stdout was replaced;
    stdin translated "\\r\\n" to "\\n", which `python prog.py` on Linux does not. Each verdict is a local run's."""
    no_closed = ("import os, sys\nclass Out:\n    def __init__(self):\n        self.parts = []\n"
                 "    def write(self, s):\n        self.parts.append(s)\n"
                 "    def flush(self):\n        os.write(1, ''.join(self.parts).encode())\n        self.parts = []\n"
                 "sys.stdout = Out()\na, b = map(int, input().split())\nprint(a + b)\n")
    original = ("import io, sys\nsys.stdout = io.StringIO()\na, b = map(int, input().split())\nprint(a + b)\n"
                "sys.__stdout__.write(sys.stdout.getvalue())\n")
    dels = ("import os\nclass Bye:\n    def __del__(self):\n        os.write(1, b'3\\n')\nkeep = Bye()\n"
            "a, b = map(int, input().split())\nassert a + b == 3 or print(a + b)\n")  # 1 2 -> 3 from __del__ at exit
    crlf = "s = input()\nprint(len(s), repr(s[-1]))\n"
    reqs = [stdio("fast-io", FAST_IO), stdio("no-closed", no_closed), stdio("original", original),
            dict(stdio("del-at-exit", dels), test={"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}]}),
            dict(stdio("crlf", crlf), test={"kind": "stdio", "cases": [{"input": "ab\r\n", "output": "3 '\\r'\n"}]})]
    for req in reqs:  # what a plain `python prog.py` prints for each case
        for case in req["test"]["cases"]:
            p = subprocess.run([sys.executable, "-c", req["solution"]], input=case["input"].encode(), capture_output=True,
                               env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, timeout=30)
            assert (p.returncode, p.stdout.decode()) == (0, case["output"]), (req["id"], p.returncode, p.stdout, p.stderr)
    results = executor.run(reqs)
    assert [(r.id, r.status) for r in results] == [(q["id"], "passed") for q in reqs], [r.error_message for r in results]


def test_round_ten_honest_program_objects(executor):
    """Round 10 (fidelity): a test's str(), len(), iteration, `in`, indexing and isinstance() on the program's own
    objects were refused (UnencodableValue, TypeError); a local run computes each of them. They cross as the data the
    program computes, which the test code compares; `in` tests the items, not the program's own __contains__ (a
    rigged one cannot make `expected in obj` true)."""
    program = ("class Stack:\n    def __init__(self):\n        self.items = []\n"
               "    def push(self, x):\n        self.items.append(x)\n        return self\n"
               "    def __str__(self):\n        return 'Stack' + str(self.items)\n"
               "    def __len__(self):\n        return len(self.items)\n"
               "    def __iter__(self):\n        return iter(self.items)\n"
               "    def __getitem__(self, i):\n        return self.items[i]\n\n"
               "class Liar(Stack):\n    def __contains__(self, x):\n        return True\n\n"
               "def make(*xs):\n    s = Stack()\n    for x in xs:\n        s.push(x)\n    return s\n")
    lines = ["s = make(1, 2, 3)\nassert str(s) == 'Stack[1, 2, 3]' and f'{s}' == 'Stack[1, 2, 3]'",
             "assert len(make(4, 5)) == 2 and list(make(4, 5)) == [4, 5] and make(6, 7)[1] == 7",
             "assert 2 in make(1, 2) and 9 not in make(1, 2)",
             "assert isinstance(make(), Stack) and not isinstance(3, Stack) and isinstance(Liar(), Stack)"]
    _check_locally({"objects": (program, lines), "liar": (program, ["assert 9 in Liar().push(1)"])}, {})
    r, liar = executor.run([asserts("objects", program, lines), asserts("liar", program, ["assert 9 in Liar().push(1)"])])
    assert (r.status, r.tests_passed) == ("passed", 4), (r.status, r.error_type, r.error_message)
    # a local run passes the rigged one (its __contains__ says True); here it is its items: the documented difference
    assert (liar.status, liar.error_type) == ("failed", "AssertionError")


def test_a_program_can_look_up_its_user_and_time_zones(gvisor_executor):
    # Round 10 (fidelity): getpass.getuser() and pwd.getpwuid(os.getuid()) raised KeyError (no passwd entry for the
    # program's uid) and zoneinfo found no time zone (no /usr/share/zoneinfo); a local run has both.
    # Round 11: socket.getaddrinfo("localhost", ...) failed (no /etc/hosts).
    program = ("import getpass, os, pwd, socket, zoneinfo\n\ndef user():\n    return getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name\n"
               "\ndef zone(key):\n    return str(zoneinfo.ZoneInfo(key))\n"
               "\ndef local():\n    return sorted({a[4][0] for a in socket.getaddrinfo('localhost', 80, socket.AF_INET)})\n")
    lines = ["name, pw_name = user()\nassert name == pw_name != ''", "assert zone('UTC') == 'UTC' and zone('Europe/Paris') == 'Europe/Paris'",
             "assert local() == ['127.0.0.1']"]
    [r] = gvisor_executor.run([asserts("lookups", program, lines)])
    assert (r.status, r.tests_passed) == ("passed", 3), (r.status, r.error_type, r.error_message)


def test_multiprocessing_works_and_its_dev_shm_is_the_programs_own(gvisor_executor):
    # Rounds 4 and 10 (fidelity): multiprocessing failed (its semaphores live in /dev/shm, which no program may write:
    # a place shared by all would carry state from one program to the next). /dev/shm is now a link to where each
    # program's fresh scratch tmpfs is mounted.
    pool = ("import multiprocessing as mp\ndef sq(x):\n    return x * x\nif __name__ == '__main__':\n"
            "    with mp.Pool(2) as p:\n        print(sum(p.map(sq, range(int(input())))))\n")
    leave = "open('/dev/shm/leak', 'w').write('x')\nprint(open('/dev/shm/leak').read())\n"
    look = "import os\nprint(os.path.exists('/dev/shm/leak'), os.listdir('.'))\n"
    one = lambda rid, prog, inp, out: dict(stdio(rid, prog), timeout_s=10.0,
                                            test={"kind": "stdio", "cases": [{"input": inp, "output": out}]})
    results = gvisor_executor.run([one("mp-pool", pool, "10\n", "285\n"), one("leave", leave, "", "x\n"),
                                   one("look", look, "", "False []\n")])
    assert [(r.id, r.status) for r in results] == [("mp-pool", "passed"), ("leave", "passed"), ("look", "passed")], \
        [(r.status, r.stdout, r.stderr[-300:]) for r in results]


def test_a_frame_dear_to_parse_is_refused_before_parsing():
    """Round 11: json.loads is one C call no signal interrupts (neither the alarm nor the memory watch's ticks), and a
    32 MiB frame of nested empty lists held the judge there for seconds and gigabytes: `sandbox_error` (hung) at
    will, on every test kind. decode() now bounds the values a frame can hold from its commas and brackets first."""
    from sandbox import codec
    nested = b"[" + b",".join([b"[" * 400 + b"]" * 400] * 20_000) + b"]"   # 8M lists in 16 MiB
    flat = b"[" + b",".join([b"[]"] * (codec.MAX_NODES // 2)) + b"]"       # 2M lists and 2M commas
    for frame in (nested, flat):
        with pytest.raises(codec.CodecError, match="more than 4M items"):
            codec.decode(frame)
    assert codec.decode(codec.encode(list(range(10 ** 6)))) == list(range(10 ** 6))   # a big honest value crosses


def test_nested_frames_and_program_messages_cannot_take_the_worker_down(gvisor_executor):
    """Round 11: (1) the 32 MiB frame of nested lists above, sent by a program instead of its answer: the host
    replaced the sandbox as hung, twice (`sandbox_error`, 23 s). (2) A failed assert whose message is a program
    object (`assert isinstance(r, int), r`): building the verdict's message ran the object's __str__ in the program,
    whose SystemExit or KeyboardInterrupt escaped the judge and ended the worker. (3) A test raising a program's own
    exception class crashed the verdict (KeyError). Each is now the verdict a local run gives, or a ProtocolError."""
    flood = ("import os, time\ndef add(a, b):\n    chain = b'[' * 400 + b']' * 400\n"
             "    body = b'[' + b','.join([chain] * (((32 << 20) - 2) // 801)) + b']'\n"
             "    frame = len(body).to_bytes(4, 'big') + body\n    v = memoryview(frame)\n"
             "    while v:\n        v = v[os.write(3, v):]\n    time.sleep(60)\n")
    rigged = "class R:\n    def __str__(self):\n        raise {}\n\ndef add(a, b):\n    return R()\n"
    own = "class InvalidInput(ValueError):\n    pass\n\n" + GOOD_ADD
    reqs = [he("nested-flood", flood, timeout_s=5.0)]
    reqs += [asserts(f"message-{exc}", rigged.format(exc), ["r = add(1, 2)\nassert isinstance(r, int), r"])
             for exc in ("SystemExit(3)", "KeyboardInterrupt", "GeneratorExit", "ValueError('x')")]
    reqs += [asserts("raises-own-class", own, ["assert add(1, 2) == 3\nraise InvalidInput('bad')"])]
    results = gvisor_executor.run(reqs + [GOOD["humaneval"]])
    flooded, *messages, raised, good = results
    assert (flooded.status, flooded.error_type) == ("error", "ProtocolError") and flooded.duration_s < 5.0, \
        (flooded.status, flooded.error_message, flooded.duration_s)
    for r in messages:
        assert (r.status, r.error_type, r.error_message) == ("failed", "AssertionError", "r = add(1, 2)\n"
                                                             "assert isinstance(r, int), r"), (r.id, r.status, r.error_message)
    assert (raised.status, raised.error_type, raised.error_message) == ("error", "InvalidInput", "bad"), raised
    assert good.status == "passed"
    assert not [rid for rid, _ in gvisor_executor.recent_failures if rid in {q["id"] for q in reqs}]


# --- red-team round 12: what a program makes the judge or the sandbox hold, and results of any size ----------------
def test_result_lines_of_any_size_reach_the_host(executor):
    """Round 12: a result line over about 64 KiB (wide characters in stdout, stderr and the exception; or a traced
    honest program with long locals) lost its tail in one short write to the host's pipe: the host waited for the
    rest, took the sandbox for hung, retried and gave `sandbox_error`."""
    wide = ("import sys\nprint('\\U0001F600' * 5000)\nsys.stderr.write('\\U0001F600' * 5000)\nsys.stderr.flush()\n"
            "raise ValueError('\\U0001F600' * 600)\n")
    traced = ("def add(a, b):\n    s1 = 'x' * 200; s2 = 'y' * 200; s3 = 'z' * 200; s4 = list(range(100)); s5 = 'w' * 200\n"
              "    s6 = 'v' * 200; s7 = 'u' * 200; s8 = 't' * 200\n    total = 0\n    for i in range(300):\n"
              "        total += i\n    return a + b\n")
    failures = executor.failed_attempts
    loud, big_trace = executor.run([dict(stdio("wide", wide), test={"kind": "stdio", "cases": [{"input": "", "output": "x\n"}]}),
                                    he("long-locals", traced, trace=True)])
    assert (loud.status, loud.error_type, loud.error_message) == ("error", "ValueError", "\U0001F600" * 500), \
        (loud.status, loud.error_message and loud.error_message[:100])
    assert len(json.dumps(loud.to_dict())) > 64 << 10
    assert big_trace.status == "passed" and len(json.dumps(big_trace.to_dict())) > 64 << 10, big_trace.status
    assert executor.failed_attempts == failures, list(executor.recent_failures)


def test_frames_the_judge_holds_for_a_program_count_as_its_memory(gvisor_executor):
    """Round 12: 60 frames of 32 MiB written to the channel faster than the judge reads them (a stdio program's
    frames wait until it exits): once the memory watch left out the judge's own memory, nothing counted them, and the
    sandbox's cgroup killed the worker (`sandbox_error`, twice). They are the program's memory now."""
    flood = ("import os, struct\nn = (32 << 20) - 64\nbuf = memoryview(struct.pack('>I', n) + b'x' * n)\n"
             "for _ in range(60):\n    v = buf\n    while v:\n        v = v[os.write(3, v):]\n"
             "a, b = map(int, input().split())\nprint(a + b)\n")
    failures = gvisor_executor.failed_attempts
    flooded, good = gvisor_executor.run([stdio("channel-flood", flood, timeout_s=10.0), GOOD["stdio"]])
    assert (flooded.status, flooded.error_type) == ("memory", "MemoryError"), (flooded.status, flooded.error_message)
    assert good.status == "passed"
    assert gvisor_executor.failed_attempts == failures, list(gvisor_executor.recent_failures)


def test_kernel_buffers_past_the_sandbox_memory_are_the_programs_memory_verdict(gvisor_executor):
    """Round 12: pipe buffers live in gVisor's own memory, which the judge's watch (the sandbox's /proc/meminfo) does
    not see: 4 processes filling about 500 pipes of 1 MiB each made the sandbox's host cgroup kill it (`sandbox_error`,
    twice). The host now reads that cgroup: such a death under a request is that program's `memory` verdict, with no
    retry."""
    pipes = ("import fcntl, os, sys, time\ndef fill():\n    held = []\n    for _ in range(1000):\n        try:\n"
             "            r, w = os.pipe()\n        except OSError:\n            break\n        try:\n"
             "            fcntl.fcntl(w, 1031, 1 << 20)\n        except OSError:\n            pass\n"
             "        os.set_blocking(w, False)\n        try:\n            os.write(w, b'x' * (1 << 20))\n"
             "        except OSError:\n            pass\n        held.append((r, w))\n    return held\n"
             "for _ in range(3):\n    if os.fork() == 0:\n        fill()\n        time.sleep(30)\n        os._exit(0)\n"
             "held = fill()\ntime.sleep(2)\na, b = map(int, input().split())\nprint(a + b)\n")
    failures = gvisor_executor.failed_attempts
    held, good = gvisor_executor.run([stdio("pipe-buffers", pipes, timeout_s=10.0), GOOD["stdio"]])
    if not os.path.isdir("/sys/fs/cgroup/memory") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("no host memory cgroup to read")
    assert (held.status, held.error_type) == ("memory", "MemoryError"), (held.status, held.error_message)
    assert good.status == "passed"
    assert gvisor_executor.failed_attempts == failures, list(gvisor_executor.recent_failures)


def test_stdin_is_a_file_as_under_a_shell_redirect(executor):
    """Round 12 (fidelity): Codeforces' fast-input idiom `os.read(0, os.fstat(0).st_size)` read nothing from the
    pipe that stdin was (st_size 0); `python program.py < input`, and Codeforces itself, give a file. So do we now:
    its size, seek and mmap work, and a program with no input still reads an empty stream."""
    programs = {
        "fstat-size": "import io, os\ninput = io.BytesIO(os.read(0, os.fstat(0).st_size)).readline\n"
                      "a, b = map(int, input().split())\nprint(a + b)\n",
        "seek": "import sys\nsys.stdin.read()\nsys.stdin.seek(0)\na, b = map(int, sys.stdin.readline().split())\n"
                "print(a + b)\n",
        "mmap": "import mmap\nm = mmap.mmap(0, 0, prot=mmap.PROT_READ)\na, b = map(int, m.readline().split())\n"
                "print(a + b)\n",
        "fileinput": "import fileinput\nfor line in fileinput.input():\n    a, b = map(int, line.split())\n"
                     "    print(a + b)\n",
    }
    results = executor.run([stdio(name, src) for name, src in programs.items()]
                           + [dict(stdio("no-input", "import sys\nprint(repr(sys.stdin.read()))\n"),
                                   test={"kind": "stdio", "cases": [{"input": "", "output": "''\n"}]})])
    assert [(r.id, r.status) for r in results] == [(name, "passed") for name in programs] + [("no-input", "passed")], \
        [(r.id, r.status, r.error_type, r.error_message) for r in results]


# --- red-team round 13: what a program leaves in the sandbox after it is gone -------------------------------------
_CYCLE = ("import array, os, socket\ns1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
          "def park(fds):\n    s1.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))])\n"
          "    for fd in fds:\n        os.close(fd)\n")
_CLOSE_CYCLE = ("s1.sendmsg([b'y'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [s1.fileno(), s2.fileno()]))])\n"
                "s1.close()\ns2.close()\n")


def test_what_a_program_leaves_behind_never_reaches_the_next_program():
    """Round 13: fds sent over a unix socket that is itself in flight form a cycle this gVisor never collects, so what
    they hold outlives the program that was killed: 9000 open host files made every later program's imports fail
    ("Too many open files"), and 700 full pipes (885 MB) got a later honest program `memory`. The host now compares
    each sandbox with itself after boot after every request, and replaces one that kept more. Since round 14 the
    attacks here fail earlier, at their first sendmsg (test_programs_cannot_pass_file_descriptors): this test keeps
    the guarantee whichever line holds it."""
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed")
    files = (_CYCLE + "import sys\nbatch = []\nfor top in ('/usr/lib', sys.base_prefix):\n"
             "    for root, _, names in os.walk(top):\n        for name in names:\n            try:\n"
             "                batch.append(os.open(os.path.join(root, name), os.O_RDONLY))\n            except OSError:\n"
             "                continue\n            if len(batch) == 200:\n                park(batch)\n                batch = []\n"
             "park(batch)\n" + _CLOSE_CYCLE + "print(3)\n")
    pipes = (_CYCLE + "import fcntl\nfor _ in range(700):\n    r, w = os.pipe()\n    try:\n"
             "        fcntl.fcntl(w, 1031, 1 << 20)\n    except OSError:\n        pass\n    os.set_blocking(w, False)\n"
             "    try:\n        while True:\n            os.write(w, b'x' * (1 << 16))\n    except BlockingIOError:\n"
             "        pass\n    park([r, w])\n" + _CLOSE_CYCLE + "print(3)\n")
    imports = "import decimal, fractions, json, statistics\nprint(3)\n"
    touches = "buf = bytearray(230 << 20)\nfor i in range(0, len(buf), 4096):\n    buf[i] = 1\nprint(3)\n"
    one = lambda rid, src: dict(stdio(rid, src), timeout_s=30.0, test={"kind": "stdio", "cases": [{"input": "", "output": "3\n"}]})
    with Executor(backend="gvisor", workers=1, order="fifo", timeout_s=5.0, memory_mb=256) as ex:
        results = ex.run([one("leave-files", files), one("imports-after", imports),
                          one("leave-pipes", pipes), one("touches-after", touches)])
    by_id = {r.id: r for r in results}
    assert by_id["imports-after"].status == "passed", (by_id["imports-after"].status, by_id["imports-after"].error_message)
    assert by_id["touches-after"].status == "passed", (by_id["touches-after"].status, by_id["touches-after"].error_message)
    assert ex.failed_attempts == 0, list(ex.recent_failures)


def test_a_reply_too_big_to_encode_within_the_limit_is_memory(gvisor_executor):
    # Round 13: encoding a 2M-item reply makes copies inside the program's memory limit; the MemoryError ended the
    # process ("program exited (code 1)", `error`). It is the program's `memory` now.
    [r] = gvisor_executor.run([he("big-reply", "def add(a, b):\n    return list(range(2_000_000))\n",
                                  "def check(candidate):\n    assert len(candidate(1, 2)) == 2_000_000\n", memory_mb=128)])
    assert (r.status, r.error_type) == ("memory", "MemoryError"), (r.status, r.error_type, r.error_message)


# --- red-team round 14 ----------------------------------------------------------------------------------------------
def test_programs_cannot_pass_file_descriptors(executor):
    """Round 14: a timerfd firing every nanosecond, parked in round 13's SCM_RIGHTS cycle, kept a host core busy after
    its program was gone (later honest programs timed out), with no memory or fd the host's leak check sees. A seccomp
    filter in the zygote now fails sendmsg/sendmmsg (the only way to pass fds) in every program process, on every
    backend alike; other socket sends work, and so does multiprocessing."""
    attack = ("import array, os, socket\ns1, s2 = socket.socketpair()\nr, w = os.pipe()\ntry:\n"
              "    s1.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r, w]))])\n"
              "    print('sent')\nexcept OSError as e:\n    print(type(e).__name__)\n"
              "try:\n    socket.send_fds(s1, [b'y'], [s1.fileno(), s2.fileno()])\n    print('sent')\n"
              "except OSError as e:\n    print(type(e).__name__)\n"
              "s1.send(b'plain')\nprint(s2.recv(16).decode())\n"
              "import multiprocessing\nwith multiprocessing.Pool(2) as pool:\n    print(sum(pool.map(abs, range(-3, 3))))\n")
    expected = "PermissionError\nPermissionError\nplain\n9\n"
    results = executor.run([dict(stdio("fds", attack), test={"kind": "stdio", "cases": [{"input": "", "output": expected}]}),
                            GOOD["stdio"]])
    assert [(r.status, r.stdout) for r in results] == [("passed", expected), ("passed", "3\n4\n")], \
        [(r.status, r.error_message, r.stdout, r.stderr[-300:]) for r in results]


def test_sigpipe_and_sigxfsz_are_ignored_as_by_python(executor):
    """Round 14 (fidelity): `python program.py` ignores SIGPIPE and SIGXFSZ, so a write to a closed pipe raises
    BrokenPipeError and a file past RLIMIT_FSIZE an OSError, both catchable. Program processes had them at their
    defaults, and were killed by the signal (`error SIGPIPE`, `error SIGXFSZ`)."""
    program = ("import errno, os, signal\nprint(signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN,"
               " signal.getsignal(signal.SIGXFSZ) is signal.SIG_IGN)\n"
               "r, w = os.pipe()\nos.close(r)\ntry:\n    os.write(w, b'x')\nexcept BrokenPipeError:\n    print('EPIPE')\n"
               "try:\n    with open('big', 'wb') as f:\n        f.write(b'x' * (17 << 20))\n"
               "except OSError as e:\n    print(e.errno in (errno.EFBIG, errno.ENOSPC))\n")
    expected = "True True\nEPIPE\nTrue\n"
    [r] = executor.run([dict(stdio("signals", program), test={"kind": "stdio", "cases": [{"input": "", "output": expected}]})])
    assert (r.status, r.stdout) == ("passed", expected), (r.status, r.error_type, r.error_message, r.stdout)


def test_module_level_iterators_are_the_programs_to_use(executor):
    """Round 14 (fidelity): reporting the program's names to the judge encoded its module-level values, and encoding
    an iterator runs it to its end: an `itertools.count` id source, a generator, `iter(tokens)` were spent before any
    test. They stay in the program's process now."""
    requests = [
        he("count", "import itertools\n_ids = itertools.count(1)\ndef add(a, b):\n    return next(_ids) + 0 * a * b\n",
           "def check(candidate):\n    assert candidate(1, 2) == 1\n    assert candidate(2, 2) == 2\n"),
        he("generator", "_squares = (i * i for i in range(10))\ndef add(a, b):\n    return next(_squares)\n",
           "def check(candidate):\n    assert candidate(1, 2) == 0\n    assert candidate(2, 2) == 1\n"),
        asserts("tokens", "_tokens = iter('3 1'.split())\ndef add(a, b):\n    return int(next(_tokens))\n",
                ("assert add(0, 0) == 3", "assert add(0, 0) == 1")),
        # round 15: inside a module-level container too, and a generator's own code does not run before the tests
        he("nested", "import itertools\n_state = {'ids': itertools.count(1)}\nlog = []\n"
                     "_lazy = [(log.append(i) or i for i in range(3))]\n"
                     "def add(a, b):\n    return next(_state['ids']) + len(log)\n",
           "def check(candidate):\n    assert candidate(1, 2) == 1\n    assert candidate(2, 2) == 2\n"),
        # a test's own next() on them runs there, item by item, as locally (it was a TypeError)
        he("next", "import itertools\nids = itertools.count(1)\nsquares = (i * i for i in range(2))\n"
                   "def add(a, b):\n    return a + b + next(ids)\n",
           "def check(candidate):\n    assert candidate(1, 2) == 4\n    assert next(ids) == 2 and candidate(0, 0) == 3\n"
           "    assert [next(squares), next(squares), next(squares, 'end')] == [0, 1, 'end']\n"
           "    try:\n        next(candidate)\n        assert False\n    except TypeError as e:\n"
           "        assert 'not an iterator' in str(e)\n"),
    ]
    results = executor.run(requests)
    assert [(r.id, r.status, r.tests_passed) for r in results] == [(q["id"], "passed", 4 if q["id"] == "next" else 2)
                                                                    for q in requests], \
        [(r.id, r.status, r.error_type, r.error_message) for r in results]


def test_module_level_values_too_large_to_cross_stay_in_the_program(gvisor_executor):
    """Round 14 (fidelity): a 40 MB bytearray sieve (its encoding runs out of memory) and two tables that cross one at
    a time but not together ended the program while its names were sent ("program exited (code 1)"). Such values now
    stay in its process; a test still reads them, through remote calls."""
    sieve = "SIEVE = bytearray(40_000_000)\nSIEVE[97] = 1\ndef add(a, b):\n    return a + b if SIEVE[97] else 0\n"
    tables = "A = list(range(2_200_000))\nB = list(range(2_200_000))\ndef add(a, b):\n    return A[a] + B[b]\n"
    # round 15: one value just under the codec's item bound, over it with the names around it
    zeros = "DP = [0] * 4_194_300\ndef add(a, b):\n    return a + b + DP[a]\n"
    test = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
    results = gvisor_executor.run([he("sieve", sieve, test, memory_mb=256, timeout_s=30.0),
                                   he("tables", tables, test + "    assert len(A) == 2_200_000 and A[7] == 7\n",
                                      timeout_s=30.0),
                                   he("zeros", zeros, test, timeout_s=30.0)])
    assert [(r.status, r.tests_passed) for r in results] == [("passed", 2), ("passed", 3), ("passed", 2)], \
        [(r.id, r.status, r.error_type, r.error_message, r.stderr[-300:]) for r in results]


def test_numpy_scalars_cross_as_python_scalars(executor):
    """Round 14 (fidelity): np.sum's int64 and np.all's bool_ were `error UnencodableValue`; a local `== 6` compares
    them as numbers. They cross as the Python scalar of their value (np.float64, a float subclass, always did)."""
    pytest.importorskip("numpy")
    program = ("import numpy as np\ndef add(a, b):\n    return np.sum(np.array([a, b]))\n"
               "def both(a, b):\n    return np.all(np.array([a, b]) > 0)\n"
               "def tenths(n):\n    return np.float32(n / 10)\n")
    # round 15: a float32 crosses as the float its shortest repr names, as numpy 2 compares it with 0.7 locally
    test = ("def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
            "    assert both(1, 2) == True and both(0, 2) == False\n    assert tenths(7) == 0.7\n")
    [r] = executor.run([he("numpy", program, test, timeout_s=30.0)])
    assert (r.status, r.tests_passed) == ("passed", 4), (r.status, r.error_type, r.error_message)


def test_large_arguments_go_back_only_when_the_call_changed_them(gvisor_executor):
    """Round 14 (fidelity): every list argument went back with the answer, so `sorted(xs)` of a large list doubled the
    reply past the codec's bounds (`UnencodableValue`). A large argument goes back only if the call changed it; one
    sorted in place still changes the test's list, as locally."""
    rows = "[('%05d' % i) + 'x' * 1000 for i in range(20_000)][::-1]"
    program = "def add(xs, b):\n    return sorted(xs) if b else xs.sort()\n"
    test = (f"def check(candidate):\n    xs = {rows}\n    assert candidate(xs, 1) == sorted(xs)\n"
            "    assert xs[0].startswith('19999')\n    assert candidate(xs, 0) is None\n    assert xs == sorted(xs)\n")
    [r] = gvisor_executor.run([he("args", program, test, timeout_s=30.0)])
    assert (r.status, r.tests_passed) == ("passed", 4), (r.status, r.error_type, r.error_message)


def test_a_returned_argument_is_the_tests_own_object(gvisor_executor):
    """Round 15 (fidelity): `xs.sort(); return xs` sent the list twice, as the value and as the changed argument, so
    one of 2.1M items went past the codec's bounds (`UnencodableValue`). A call that returns one of its mutable
    arguments now answers with that argument's place, and the test gets its own object back (changed as the call
    changed it): `f(xs) is xs` holds, as locally; a copy is still a copy."""
    program = ("def add(xs):\n    xs.sort()\n    return xs\n"
               "def same(d, e=None):\n    d[2] = 3\n    return e if e is not None else d\n"
               "def dup(xs):\n    return list(xs)\n")
    test = ("def check(candidate):\n    xs = list(range(2_100_000, 0, -1))\n    ys = candidate(xs)\n"
            "    assert ys is xs and xs[:3] == [1, 2, 3] and len(xs) == 2_100_000\n"
            "    d, e = {1: 2}, {}\n    assert same(d) is d and d == {1: 2, 2: 3}\n    assert same(d, e=e) is e\n"
            "    assert dup(d) is not d and dup(xs) is not xs\n")
    [r] = gvisor_executor.run([he("argret", program, test, timeout_s=30.0)])
    assert (r.status, r.tests_passed) == ("passed", 4), (r.status, r.error_type, r.error_message)
