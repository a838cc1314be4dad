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
    # the third call's argument holds 1, which the first call's result is checked against: it opens a batch
    assert [[(name, codec.decode(k)) for name, k in batch] for batch in judge.prefetch_plan(check)] == [
        [("candidate", [[1], {}]), ("candidate", [[2.5], {}])], [("candidate", [[], {"x": [1, (2, 3)]}])]]
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
    assert [[n for n, _ in batch] for batch in judge.asserts_prefetch_plan(tuple(asserts))] == [["f"] * 4]
    [r] = executor.run([{"id": "as", "solution": counter, "test": {"kind": "asserts", "asserts": asserts}}])
    assert (r.status, r.tests_passed, r.tests_total, r.error_message) == ("failed", 3, 4, "assert f(3) == 0")
    cases = [{"args": [1], "expected": 11}, {"args": [2], "expected": 22}, {"args": [3], "expected": 33}]
    [r] = executor.run([{"id": "call", "solution": counter, "test": {"kind": "call", "fn_name": "f", "cases": cases}}])
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 3, 3), r.error_message


def test_no_expected_value_reaches_the_program_before_the_call_it_checks():
    # A call whose arguments hold (at any depth) a value an earlier call of its batch is checked against opens a
    # new batch, sent only once every call before it is answered.
    plan = judge.asserts_prefetch_plan(("assert rev('ab') == 'ba'", "assert rev('xy') == 'yx'", "assert rev('ba') == 'ab'",
                                        "assert rev(['q', ('yx',)]) == 0", "assert rev(-4) == 4", "assert rev(4) == 1"))
    assert [[codec.decode(k)[0][0] for _, k in batch] for batch in plan] == [
        ["ab", "xy"], ["ba", ["q", ("yx",)], -4], [4]]   # ('yx' was checked in a batch answered before)
    assert judge.prefetch_batches([("a", [[1]], (True,)), ("b", [[1]], ())]) == (("a",), ("b",))   # 1 == True
    assert judge.prefetch_batches([("a", [[-4]], (-4,)), ("b", [[4]], ())]) == (("a", "b"),)


# A wrong `rev` that answers with the argument of the other call sent with it (read from its caller's frames, where
# the batch it was sent lies), and an honest one: each test checks one call's result against the other's argument.
PEEKING_REV = ("import sys\n"
               "def _batch():\n"
               "    f = sys._getframe(1)\n"
               "    while f is not None:\n"
               "        m = f.f_locals.get('msg')\n"
               "        if isinstance(m, dict) and m.get('op') == 'calls':\n"
               "            return [c[2] for c in m['calls']]\n"
               "        f = f.f_back\n"
               "    return []\n"
               "def rev(s):\n"
               "    others = [a[0] for a in _batch() if a and a[0] != s]\n"
               "    return others[0] if len(others) == 1 else s\n")
INVOLUTION_TESTS = [
    {"kind": "asserts", "asserts": ["assert rev('abcdef') == 'fedcba'", "assert rev('fedcba') == 'abcdef'"]},
    {"kind": "humaneval", "entry_point": "rev",
     "test": "def check(candidate):\n    assert candidate('hello') == 'olleh'\n    assert candidate('olleh') == 'hello'\n"},
    {"kind": "call", "fn_name": "rev", "cases": [{"args": ["xyz1"], "expected": "1zyx"},
                                                 {"args": ["1zyx"], "expected": "xyz1"}]},
]


def test_a_program_cannot_answer_with_a_later_calls_argument(executor):
    reqs = [{"id": f"peek-{t['kind']}", "solution": PEEKING_REV, "test": t} for t in INVOLUTION_TESTS]
    reqs += [{"id": f"honest-{t['kind']}", "solution": "def rev(s):\n    return s[::-1]\n", "test": t}
             for t in INVOLUTION_TESTS]
    results = executor.run(reqs)
    assert [(r.id, r.status) for r in results[:3]] == [(q["id"], "failed") for q in reqs[:3]]
    assert [(r.id, r.status, r.tests_passed) for r in results[3:]] == [(q["id"], "passed", 2) for q in reqs[3:]]
