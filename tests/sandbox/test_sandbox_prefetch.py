"""Calls sent ahead of the test code (judge.prefetch_plan): one message for the leading literal asserts,
the same verdicts and the same calls, in the same order, as a plain run."""
from sandbox import codec, judge


def he(rid, solution, test, entry="f", **kw):
    return {"id": rid, "solution": solution, "test": {"kind": "humaneval", "test": test, "entry_point": entry}, **kw}


def test_prefetch_plan_takes_the_leading_literal_asserts():
    check = ("def check(candidate):\n"
             "    assert candidate(1) == 1\n"
             "    assert abs(candidate(2.5) - 2.5) < 1e-9, 'close'\n"
             "    assert candidate(x=[1, (2, 3)]) == [1, (2, 3)]\n"
             "    n = 3\n"
             "    assert candidate(n) == n\n"
             "    assert candidate(4) == 4\n")
    assert [(name, codec.decode(k)) for name, k in judge.prefetch_plan(check)] == [
        ("candidate", [[1], {}]), ("candidate", [[2.5], {}]), ("candidate", [[], {"x": [1, (2, 3)]}])]
    for first in ("assert candidate(1) == candidate(1)",      # two calls
                  "assert helper(candidate(1))",              # a function that is not a pure builtin
                  "assert candidate(1) or candidate(2)",      # a call that may not happen
                  "assert [candidate(i) for i in (1,)]",
                  "assert candidate(1).real == 1",
                  "assert candidate(1) == 1, candidate(2)"):
        assert judge.prefetch_plan(f"def check(candidate):\n    {first}\n    assert candidate(4) == 4\n") == ()


def test_calls_happen_once_each_in_the_order_of_a_plain_run(executor):
    counter = "calls = []\ndef f(x=None):\n    calls.append(x)\n    return (len(calls), x)\n"
    check = ("def check(candidate):\n"
             "    assert candidate(1) == (1, 1)\n"
             "    assert candidate(x='b') == (2, 'b')\n"
             "    k = 3\n"
             "    assert candidate(k) == (3, 3)\n"
             "    assert candidate(4) == (4, 4)\n")
    [r] = executor.run([he("order", counter, check)])
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 4, 4), r.error_message


def test_a_call_the_test_code_does_not_make_is_skipped(executor):
    # the first assert fails in the test code before its call: the call answered ahead is dropped and the
    # next one still gets its own answer
    check = "def check(candidate):\n    assert 1 // 0 == candidate(5)\n    assert candidate(7) == 7\n"
    [r] = executor.run([he("skip", "def f(x):\n    return x\n", check)])
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("error", "ZeroDivisionError", 1, 2)
    [r] = executor.run([he("skip-raise", "def f(x):\n    if x == 5:\n        raise KeyError(x)\n    return x\n",
                           check.replace("1 // 0 == ", "")[:-1] + "\n    assert candidate(5) == 5\n")])
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("error", "KeyError", 1, 3)


def test_asserts_and_call_kinds_keep_order_and_counts(executor):
    counter = "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls) * 10 + x\n"
    asserts = ["assert f(1) == 11", "assert f(2) == 22", "assert f(3) == 0", "assert f(4) == 44"]
    assert [n for n, _ in judge.asserts_prefetch_plan(tuple(asserts))] == ["f"] * 4
    [r] = executor.run([{"id": "as", "solution": counter, "test": {"kind": "asserts", "asserts": asserts}}])
    assert (r.status, r.tests_passed, r.tests_total, r.error_message) == ("failed", 3, 4, "assert f(3) == 0")
    cases = [{"args": [1], "expected": 11}, {"args": [2], "expected": 22}, {"args": [3], "expected": 33}]
    [r] = executor.run([{"id": "call", "solution": counter, "test": {"kind": "call", "fn_name": "f", "cases": cases}}])
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 3, 3), r.error_message
