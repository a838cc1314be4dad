"""Verdicts for every test kind on real programs, on both backends."""
import pytest

from sandbox import Executor, RequestError, Result
from sandbox.schema import OUTPUT_CAP_CHARS

needs_runsc = pytest.mark.skipif(not __import__("shutil").which("runsc") and not __import__("os").path.exists("/usr/bin/runsc"),
                                 reason="runsc (gVisor) is not installed: apt-get install -y runsc")

HE_TEST = """
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(0, 0) == 0
    for a in range(3):
        assert candidate(a, 1) == a + 1
    assert candidate(-1, 1) == 0
"""


def he(rid, solution, **kw):
    return {"id": rid, "solution": solution, "test": {"kind": "humaneval", "test": HE_TEST, "entry_point": "add"}, **kw}


def run1(ex, req) -> Result:
    [r] = ex.run([req])
    assert r.id == req["id"]
    return r


def test_humaneval_pass_and_split_count(executor):
    r = run1(executor, he("ok", "def add(a, b):\n    return a + b\n"))
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 4, 4)
    assert r.error_type is None and r.error_line is None
    assert r.isolation == ("gvisor" if executor.backend.isolation == "gvisor" else "process")


def test_humaneval_partial_count_runs_every_case(executor):
    # wrong only when b == 2 (first assert) and for the negative case: 2 of 4 split cases pass
    sol = "def add(a, b):\n    if b == 2 or a < 0:\n        return 7\n    return a + b\n"
    r = run1(executor, he("partial", sol))
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("failed", "AssertionError", 2, 4)
    assert r.error_message == "assert candidate(1, 2) == 3"
    assert r.error_line is None


def test_error_type_and_line_are_from_the_solution(executor):
    sol = "def helper(x):\n    return [1, 2][x]\n\ndef add(a, b):\n    return helper(a + b)\n"
    r = run1(executor, he("idx", sol))
    # add(1,2) -> IndexError at line 2; add(0,0)=1 != 0 fails; loop case: add(0,1)=2 != 1 fails; add(-1,1)=1 != 0
    assert (r.status, r.error_type, r.error_line) == ("error", "IndexError", 2)
    assert r.tests_passed == 0 and r.tests_total == 4


def test_definition_time_error(executor):
    r = run1(executor, he("def", "import math\nx = 1 / 0\ndef add(a, b):\n    return a + b\n"))
    assert (r.status, r.error_type, r.error_line, r.tests_passed) == ("error", "ZeroDivisionError", 2, 0)


def test_syntax_error(executor):
    r = run1(executor, he("syn", "def add(a, b):\n    return a +\n"))
    assert (r.status, r.error_type, r.error_line) == ("syntax_error", "SyntaxError", 2)


def test_missing_entry_point(executor):
    r = run1(executor, he("noentry", "def plus(a, b):\n    return a + b\n"))
    assert (r.status, r.error_type) == ("error", "NameError")


def test_recursion_error(executor):
    sol = "def add(a, b):\n    return add(a, b)\n"
    r = run1(executor, he("rec", sol))
    assert (r.status, r.error_type, r.error_line) == ("error", "RecursionError", 2)


def test_memory_status(executor):
    r = run1(executor, he("mem", "def add(a, b):\n    x = bytearray(1 << 34)\n    return a + b\n", memory_mb=128))
    assert (r.status, r.error_type, r.error_line) == ("memory", "MemoryError", 2)


def test_timeout_keeps_partial_count(executor):
    sol = "def add(a, b):\n    if a == 0 and b == 0:\n        while True:\n            pass\n    return a + b\n"
    r = run1(executor, he("slow", sol, timeout_s=1.0))
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("timeout", "Timeout", 1, 4)
    assert r.error_message == "wall-clock limit of 1.0s exceeded"
    assert r.duration_s >= 1.0        # the limit was really reached (no upper bound: busy machines vary)


@needs_runsc
def test_timeouts_never_cost_a_worker():
    # The pump's deadline check and the test code's SIGALRM fire at the same deadline; whichever comes second must
    # not raise again while the first is handled (it used to escape the judge and kill the worker: 14 of 80).
    # A pool of its own: the session's shared one may still be replacing a sandbox another test's program broke.
    loops = [{"id": f"loop{i}", "solution": "def add(a, b):\n    while True:\n        pass\n", "timeout_s": 0.2,
              "test": {"kind": "asserts", "asserts": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]}}
             for i in range(40)]
    with Executor(backend="gvisor", workers=2, timeout_s=5.0, memory_mb=256) as ex:
        results = ex.run(loops)
        assert {(r.status, r.error_message) for r in results} == {("timeout", "wall-clock limit of 0.2s exceeded")}
        assert ex.failed_attempts == 0, list(ex.recent_failures)


def test_asserts_kind_mbpp(executor):
    req = {"id": "mbpp", "solution": "def sq(x):\n    return x * x if x < 3 else 0\n",
           "test": {"kind": "asserts", "setup": "import math\nK = 2",
                    "asserts": ["assert sq(K) == 4", "assert sq(3) == 9", "assert sq(1) == 1", "assert sq(4) == 16"]}}
    r = run1(executor, req)
    assert (r.status, r.tests_passed, r.tests_total, r.error_message) == ("failed", 2, 4, "assert sq(3) == 9")


def test_stdio_kind_normalizes_whitespace(executor):
    sol = "import sys\nn = int(input())\nfor i in range(n):\n    print(i, ' ')\nprint()\nif n == 3:\n    sys.exit(0)\nprint('end')\n"
    cases = [{"input": "2\n", "output": "0\n1\n\nend\n\n"},    # trailing spaces and blank lines ignored
             {"input": "3", "output": "0\n1\n2\n"},            # exit(0) after printing is a normal end
             {"input": "1\n", "output": "0\nEND\n"},           # wrong output
             {"input": "x\n", "output": ""}]                   # ValueError
    r = run1(executor, {"id": "io", "solution": sol, "test": {"kind": "stdio", "cases": cases}})
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("failed", "AssertionError", 2, 4)
    assert "case 2" in r.error_message


def test_stdio_runtime_error_first(executor):
    cases = [{"input": "0\n", "output": "x"}, {"input": "2\n", "output": "0.5"}]
    r = run1(executor, {"id": "io2", "solution": "print(1 / int(input()))\n", "test": {"kind": "stdio", "cases": cases}})
    assert (r.status, r.error_type, r.error_line, r.tests_passed) == ("error", "ZeroDivisionError", 1, 1)


def test_call_kind(executor):
    sol = "class Solution:\n    def pair(self, a, b):\n        return (a, b) if a else [b]\n"
    cases = [{"args": [1, 2], "expected": [1, 2]}, {"args": [0, 5], "expected": [5]}, {"args": [2, 2], "expected": [2, 3]}]
    r = run1(executor, {"id": "call", "solution": sol, "test": {"kind": "call", "fn_name": "pair", "cases": cases}})
    assert (r.status, r.tests_passed, r.tests_total, r.error_type) == ("failed", 2, 3, "AssertionError")
    ok = run1(executor, {"id": "call2", "solution": "def f(x):\n    return {'k': [x, None]}\n",
                         "test": {"kind": "call", "fn_name": "f", "cases": [{"args": [1], "expected": {"k": [1, None]}}]}})
    assert ok.status == "passed"


def test_stdout_is_captured_and_capped(executor):
    sol = "print('hello')\nprint('x' * 100000)\ndef add(a, b):\n    return a + b\n"
    r = run1(executor, he("out", sol))
    assert r.status == "passed"
    assert r.stdout.startswith("hello\nxxx") and r.stdout.endswith("...[truncated]")
    assert len(r.stdout) == OUTPUT_CAP_CHARS + len("...[truncated]")


def test_programs_do_not_share_state(executor):
    # Each request runs in a fresh child: a module-level counter and a scratch file never carry over.
    sol = ("import os, builtins\nassert not os.listdir('.'), os.listdir('.')\nopen('mark', 'w').write('x')\n"
           "assert not hasattr(builtins, 'POISON')\nbuiltins.POISON = 1\n"
           "def add(a, b):\n    return a + b\n")
    results = executor.run([he(f"iso{i}", sol) for i in range(6)])
    assert [r.status for r in results] == ["passed"] * 6, [r.error_message for r in results]


def test_results_in_request_order_and_imap(executor):
    reqs = [he(f"o{i}", "def add(a, b):\n    return a + b\n" if i % 2 else "def add(a, b):\n    return 0\n")
            for i in range(8)]
    assert [r.id for r in executor.run(reqs)] == [q["id"] for q in reqs]
    got = {r.id: r.status for r in executor.imap(reqs)}
    assert got == {q["id"]: ("passed" if i % 2 else "failed") for i, q in enumerate(reqs)}
    fut = executor.submit(reqs[1])
    assert fut.result(timeout=30).status == "passed"


@pytest.mark.parametrize("bad, match", [
    ({"solution": "x", "test": {"kind": "asserts", "asserts": []}}, "missing field 'id'"),
    ({"id": "a", "solution": "x", "test": {"kind": "bogus"}}, "unknown test kind 'bogus'"),
    ({"id": "a", "solution": "x", "test": {"kind": "humaneval", "test": "def check(c): pass"}}, "entry_point"),
    ({"id": "a", "solution": 3, "test": {"kind": "asserts", "asserts": []}}, "'solution' must be str"),
    ({"id": "a", "solution": "x", "test": {"kind": "stdio", "cases": [{"input": "1"}]}}, "case 0"),
    ({"id": "a", "solution": "x", "test": {"kind": "asserts", "asserts": ["assert 1"]}, "timeout_s": -1}, "timeout_s"),
    # a request without tests would pass any program: refused at parse time, like every request error
    ({"id": "a", "solution": "x", "test": {"kind": "asserts", "asserts": []}}, r"no tests: 'asserts' is empty"),
    ({"id": "a", "solution": "x", "test": {"kind": "stdio", "cases": []}}, r"no tests: 'cases' is empty"),
    ({"id": "a", "solution": "x", "test": {"kind": "call", "fn_name": "f", "cases": []}}, r"no tests: 'cases' is empty"),
    ({"id": "a", "solution": "x", "test": {"kind": "humaneval", "entry_point": "f",
                                           "test": "def check(candidate):\n    candidate(1)\n"}},
     r"check\(\) contains no assert"),
    ({"id": "a", "solution": "x", "test": {"kind": "humaneval", "entry_point": "f",
                                           "test": "def check(candidate):\n    assert True, 'debug'\n    candidate(1)\n"}},
     r"check\(\) contains no assert that can fail"),
    ({"id": "a", "solution": "x", "test": {"kind": "humaneval", "entry_point": "f", "test": "x = 1\n"}},
     r"no check\(candidate\)"),
])
def test_invalid_requests_are_rejected_with_the_field(process_executor, bad, match):
    with pytest.raises(RequestError, match=match):
        process_executor.submit(bad)


def test_stdio_every_input_and_output_path(executor):
    # open(0) is a fresh file object on fd 0 that buffers the whole input, so mixing it with sys.stdin
    # is undefined in CPython too; run each reader on its own instead
    readers = {
        "open0": "print(sum(map(int, open(0).read().split())))\n",
        "buffer": "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n",
        "input": "print(int(input()) + int(input()) + int(input()))\n",
        "oswrite": "import os, sys\nos.write(1, str(sum(map(int, sys.stdin.read().split()))).encode())\n",
    }
    cases = [{"input": "1\n2\n3\n", "output": "6\n"}, {"input": "4\n5\n6", "output": "15"}]
    reqs = [{"id": k, "solution": v, "test": {"kind": "stdio", "cases": cases}} for k, v in readers.items()]
    for r in executor.run(reqs):
        assert (r.id, r.status, r.tests_passed) == (r.id, "passed", 2), (r.error_type, r.error_message)
    [r] = executor.run([{"id": "exit-msg", "solution": "import sys\nprint(1)\nsys.exit('bad input')\n",
                         "test": {"kind": "stdio", "cases": [{"input": "", "output": "1\n"}]}}])
    assert (r.status, r.error_type, r.stderr) == ("error", "SystemExit", "bad input\n"), r.error_message
    [r] = executor.run([{"id": "flood", "solution": "while True:\n    print('z' * 10000)\n", "timeout_s": 5,
                         "test": {"kind": "stdio", "cases": [{"input": "", "output": ""}]}}])
    assert (r.status, r.error_type) == ("error", "OutputLimitExceeded"), r.error_message


def test_std_streams_are_fresh_utf8_pipes_in_every_program(executor):
    # The zygote builds the std streams once (program._program_streams); each program process must see
    # them as a plain run over pipes does (utf-8 with surrogateescape, as CPython under a UTF-8 locale: the lone
    # surrogate goes out as the byte 0xff, which the judge reads back as U+FFFD; stderr line-buffered; nothing
    # written by an earlier program), whether its stdin is fed or empty.
    probe = ("import sys\nprint(sys.stdin.read().strip() or '-', sys.stdout.encoding, sys.stdout.errors,\n"
             "      sys.stderr.line_buffering, sys.stdout.line_buffering, sys.stdout.isatty(),\n"
             "      sys.stdout is sys.__stdout__, sys.stdout.fileno(), '\\udcff')\n")
    unflushed = "import os, sys\nsys.stdout.write('left in the buffer')\nos._exit(0)\n"
    want = "utf-8 surrogateescape True False False True 1 \ufffd\n"
    reqs = [{"id": "unflushed", "solution": unflushed, "test": {"kind": "stdio", "cases": [{"input": "", "output": ""}]}},
            {"id": "probe", "solution": probe, "test": {"kind": "stdio", "cases": [
                {"input": "", "output": "- " + want}, {"input": "fed\n", "output": "fed " + want}]}}]
    for r in executor.run(reqs):
        assert (r.id, r.status) == (r.id, "passed"), (r.error_type, r.error_message, r.stdout)


def test_programs_inherit_a_frozen_heap_and_collect_their_own_garbage(executor):
    # The zygote freezes what it holds before forking (program.zygote): a full collection in a program then walks only
    # the program's own objects, not every inherited one (each write to an inherited page is a copy-on-write fault,
    # 2 MiB at a time under gVisor). The program's own cycles are still collected.
    sol = ("import gc\n\ndef frozen():\n    return gc.get_freeze_count()\n\n"
           "def collected():\n    class Node:\n        pass\n    for _ in range(10):\n        a, b = Node(), Node()\n"
           "        a.other, b.other = b, a\n    return gc.collect()\n")
    r = run1(executor, {"id": "gc", "solution": sol,
                        "test": {"kind": "asserts", "asserts": ["assert frozen() > 1000", "assert collected() >= 20"]}})
    assert (r.status, r.tests_passed) == ("passed", 2), (r.status, r.error_message)


def test_asserts_that_cannot_fail_are_not_cases(executor):
    # Red-team round 12: 37 HumanEval tests hold `assert True, "..."` lines (50 in all); counted as cases, they gave a
    # program that fails every real assert partial credit (tests_passed > 0), which the rewards read.
    test = ("def check(candidate):\n    assert True, 'This prints if this assert fails 1 (good for debugging!)'\n"
            "    assert candidate(1) == 2\n    assert True\n    assert candidate(2) == 3\n")
    wrong, right = executor.run([{"id": f"const-{name}", "solution": f"def inc(x):\n    return x {op} 1\n",
                                  "test": {"kind": "humaneval", "test": test, "entry_point": "inc"}}
                                 for name, op in (("wrong", "-"), ("right", "+"))])
    assert (wrong.status, wrong.tests_passed, wrong.tests_total) == ("failed", 0, 2), wrong
    assert (right.status, right.tests_passed, right.tests_total) == ("passed", 2, 2), right
