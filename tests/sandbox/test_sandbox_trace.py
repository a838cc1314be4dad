"""Execution traces: exact coverage, bounded events and reprs, exception frames, budget."""
import json

PROG = """def f(xs):
    total = 0
    for x in xs:
        total += x
    return total
"""


def req(rid, solution, asserts, **kw):
    return {"id": rid, "solution": solution, "test": {"kind": "asserts", "asserts": asserts}, **kw}


def test_trace_off_by_default(executor):
    [r] = executor.run([req("off", PROG, ["assert f([1, 2]) == 3"])])
    assert r.status == "passed" and r.trace is None


def test_coverage_counts_are_exact(executor):
    [r] = executor.run([req("cov", PROG, ["assert f([1, 2, 3]) == 6", "assert f([]) == 0"], trace=True)])
    assert r.status == "passed"
    # line 1 (def) runs at definition; loop header runs len+1 times per call
    assert r.trace["coverage"] == {"1": 1, "2": 2, "3": 4 + 1, "4": 3, "5": 2}
    ev = r.trace["events"]
    assert ev[0] == {"line": 1, "fn": "<module>", "locals": {}}
    assert {"line": 4, "fn": "f", "locals": {"xs": "[1, 2, 3]", "total": "0", "x": "1"}} in ev
    assert r.trace["exception"] is None and r.trace["truncated"] is False
    assert len(json.dumps(r.trace)) < 20000


def test_exception_frames_inside_solution(executor):
    sol = "def g(d, k):\n    return d[k]\n\ndef f(x):\n    d = {'a': 1}\n    return g(d, x)\n"
    [r] = executor.run([req("exc", sol, ["assert f('b') == 1"], trace=True)])
    assert (r.status, r.error_type, r.error_line) == ("error", "KeyError", 2)
    exc = r.trace["exception"]
    assert exc["type"] == "KeyError"
    assert [(fr["fn"], fr["line"]) for fr in exc["frames"]] == [("f", 6), ("g", 2)]
    assert exc["frames"][1]["locals"] == {"d": "{'a': 1}", "k": "'b'"}


def test_trace_is_bounded_and_stops_after_budget(executor):
    sol = "def f(n):\n    s = 'x' * 10000\n    i = 0\n    while i < n:\n        i += 1\n    return i\n"
    [r] = executor.run([req("big", sol, ["assert f(300000) == 300000"], trace=True, timeout_s=20)])
    assert r.status == "passed"
    t = r.trace
    assert t["truncated"] is True and t["events_total"] is None
    assert len(t["events"]) == 200
    assert sum(t["coverage"].values()) == 100_000          # the event budget, then tracing switched off
    assert all(len(v) <= 120 for e in t["events"] for v in e["locals"].values())
    assert len(json.dumps(t)) < 100_000


def test_tracing_is_off_for_good_after_the_budget(executor):
    """Past the event budget no trace function is left installed, not even the one new frames would call (with
    it a traced recursive fib(34) ran 7x slower and timed out where an untraced run took 0.6 s)."""
    sol = ("import sys\n\ndef spin(n):\n    for _ in range(n):\n        pass\n\n"
           "def f():\n    spin(200_000)\n    return sys.gettrace() is None\n")
    [r] = executor.run([req("off", sol, ["assert f() is True"], trace=True, timeout_s=20)])
    assert r.status == "passed" and r.trace["truncated"] is True


def test_timeout_still_reports_the_trace_so_far(executor):
    sol = "def f(n):\n    i = 0\n    while i != n:\n        i += 2\n    return i\n"
    [r] = executor.run([req("loop", sol, ["assert f(4) == 4", "assert f(3) == 3"], trace=True, timeout_s=1.5)])
    assert (r.status, r.tests_passed) == ("timeout", 1)
    cov = {int(k): v for k, v in r.trace["coverage"].items()}
    assert cov[3] > 1000 and cov[4] > 1000       # the loop that never ends is visible
    assert r.trace["truncated"] is True


def test_snapshot_fast_path_gives_reprlibs_text():
    """The fast path of the snapshots' repr (small ints, short strings, floats, bools, None, also inside lists and
    tuples) gives exactly reprlib's text with the same limits, at each boundary where reprlib starts shortening."""
    import reprlib

    from sandbox import tracer

    reference = reprlib.Repr()
    for name in ("maxstring", "maxother", "maxlist", "maxtuple", "maxlevel"):
        setattr(reference, name, getattr(tracer._repr, name))
    values = [0, -7, 10**15 - 1, -(10**15) + 1, 10**15, 10**39, 10**40, -10**41, 2**200, True, None, 0.1, -0.0,
              float("nan"), float("-inf"), 1e308, "", "abc", "x" * 58, "x" * 60, "x" * 61, "'" * 40, "\x00" * 15,
              "\x00" * 16, "\U0001f600\udc80" * 20, 'a"b\'c', [1, "two", 3.0, None, [True, [[[4]]]]], tuple(range(20)),
              ["y" * 70] * 3, [10**50, -10**14]]
    for v in values:
        assert tracer.bounded_repr(v) == reference.repr(v)[:120], v
