"""The program's calls: made once each, in the order and with the arguments of a plain run, and each sent only when
the test code makes it (none ahead: a program must not see a later call's arguments before it answers)."""


def he(rid, solution, test, entry="f", **kw):
    return {"id": rid, "solution": solution, "test": {"kind": "humaneval", "test": test, "entry_point": entry}, **kw}


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
    # the first assert fails in the test code before its call: the program never makes that call, and the next
    # one gets its own answer
    check = "def check(candidate):\n    assert 1 // 0 == candidate(5)\n    assert candidate(7) == 7\n"
    [r] = executor.run([he("skip", "def f(x):\n    return x\n", check)])
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("error", "ZeroDivisionError", 1, 2)
    [r] = executor.run([he("skip-raise", "def f(x):\n    if x == 5:\n        raise KeyError(x)\n    return x\n",
                           check.replace("1 // 0 == ", "")[:-1] + "\n    assert candidate(5) == 5\n")])
    assert (r.status, r.error_type, r.tests_passed, r.tests_total) == ("error", "KeyError", 1, 3)


def test_asserts_and_call_kinds_keep_order_and_counts(executor):
    counter = "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls) * 10 + x\n"
    asserts = ["assert f(1) == 11", "assert f(2) == 22", "assert f(3) == 0", "assert f(4) == 44"]
    [r] = executor.run([{"id": "as", "solution": counter, "test": {"kind": "asserts", "asserts": asserts}}])
    assert (r.status, r.tests_passed, r.tests_total, r.error_message) == ("failed", 3, 4, "assert f(3) == 0")
    cases = [{"args": [1], "expected": 11}, {"args": [2], "expected": 22}, {"args": [3], "expected": 33}]
    [r] = executor.run([{"id": "call", "solution": counter, "test": {"kind": "call", "fn_name": "f", "cases": cases}}])
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 3, 3), r.error_message


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
    # (red team round 7: expected values built from parts, or matching a later argument after the test's own
    # conversion, got past a check of calls sent ahead by equality; no call is sent ahead now)
    {"kind": "asserts", "asserts": ["assert rev('abc') == 'c' + 'ba'", "assert rev('cba') == 'a' + 'bc'"]},
    {"kind": "humaneval", "entry_point": "rev",
     "test": "def check(candidate):\n    assert list(candidate('ab')) == ['b', 'a']\n    assert list(candidate('ba')) == ['a', 'b']\n"},
]


def test_a_program_cannot_answer_with_a_later_calls_argument(executor):
    n = len(INVOLUTION_TESTS)
    reqs = [{"id": f"peek-{i}", "solution": PEEKING_REV, "test": t} for i, t in enumerate(INVOLUTION_TESTS)]
    reqs += [{"id": f"honest-{i}", "solution": "def rev(s):\n    return s[::-1]\n", "test": t}
             for i, t in enumerate(INVOLUTION_TESTS)]
    results = executor.run(reqs)
    assert [(r.id, r.status) for r in results[:n]] == [(q["id"], "failed") for q in reqs[:n]]
    assert [(r.id, r.status, r.tests_passed) for r in results[n:]] == [(q["id"], "passed", 2) for q in reqs[n:]]
