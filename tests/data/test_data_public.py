"""Public tests: the examples each dataset's prompts show, separate from the hidden tests, with sandbox verdicts."""
import pytest

from ieta_jax import data
from ieta_jax.data import public


@pytest.fixture(scope="module")
def humaneval():
    return {t.task_id: t for t in data.load_tasks("humaneval")}


def _ex(i, call, expected):
    return f"assert (_ieta_actual := {call}) == {expected}, 'case {i}: got ' + repr(_ieta_actual)"


def test_humaneval_public_tests_are_the_docstring_examples(humaneval):
    # `>>>` examples with a literal output (the docstring's closing quotes are not part of it).
    assert humaneval["HumanEval/0"].public_test == {"kind": "asserts", "setup": "", "asserts": [
        _ex(0, "has_close_elements([1.0, 2.0, 3.0], 0.5)", "False"),
        _ex(1, "has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "True")]}
    assert humaneval["HumanEval/2"].public_test["asserts"] == [_ex(0, "truncate_number(3.5)", "0.5")]
    # `>>> f(x) == y` checks without output.
    assert humaneval["HumanEval/108"].public_test["asserts"] == [
        _ex(0, "count_nums([])", "0"), _ex(1, "count_nums([-1, 11, -11])", "1"), _ex(2, "count_nums([1, 1, 2])", "3")]
    # `f(x) => y` lines (no `>>>` at all in this prompt); the call is written in one canonical form.
    assert humaneval["HumanEval/66"].public_test["asserts"] == [
        _ex(0, "digitSum('')", "0"), _ex(1, "digitSum('abAB')", "131"), _ex(2, "digitSum('abcCd')", "67"),
        _ex(3, "digitSum('helloE')", "69"), _ex(4, "digitSum('woArBld')", "131"), _ex(5, "digitSum('aAaaaXa')", "153")]
    # `➞` with comment lines in between; a docstring erratum is dropped.
    assert humaneval["HumanEval/72"].public_test["asserts"] == [
        _ex(0, "will_it_fly([1, 2], 5)", "False"), _ex(1, "will_it_fly([3, 2, 3], 1)", "False"),
        _ex(2, "will_it_fly([3, 2, 3], 9)", "True"), _ex(3, "will_it_fly([3], 5)", "True")]
    assert humaneval["HumanEval/47"].public_test["asserts"] == [_ex(0, "median([3, 1, 2, 4, 5])", "3")]
    # Unparseable examples are skipped: `is_happy(a) => False` has a name, not a literal, as argument;
    # HumanEval/38 shows no example at all.
    assert humaneval["HumanEval/80"].public_test is None and humaneval["HumanEval/38"].public_test is None
    with_public = [t for t in humaneval.values() if t.public_test]
    assert (len(with_public), sum(len(t.public_test["asserts"]) for t in with_public)) == (132, 364)  # as documented


def test_docstring_parser_edge_cases():
    prompt = ('def f(x):\n    """Doc.\n    >>> y = 3\n    >>> print(f(1))\n    1\n    >>> f(2)\n    <object>\n'
              '    >>> f(3)  # three\n    [3]\n    >>> f(3)\n    [3]\n    f(4) -> 4\n    f(5) = 5 + 0 = 5\n'
              '    g(6) => 6\n    f(7) returns 7\n    """\n')
    # statement, print, non-literal output, duplicate, non-literal result, other function: all skipped
    assert public.docstring_examples(prompt, "f") == [("f(3)", "[3]"), ("f(4)", "4"), ("f(7)", "7")]
    assert public.docstring_examples(prompt, "f", exclude=("f( 4 )",)) == [("f(3)", "[3]"), ("f(7)", "7")]
    assert public.examples_test([]) is None and public.asserts_test([]) is None


def test_mbpp_public_test_is_the_shown_assert(fixtures_dir):
    tasks = data.load_tasks(str(fixtures_dir / "mbpp_full.jsonl"))
    assert tasks[0].public_test == {"kind": "asserts", "setup": "", "asserts": [_ex(0, "square_sum(2)", "5")]}
    assert "assert square_sum(2) == 5" in tasks[0].prompt                       # it is the one shown
    assert tasks[2].public_test["setup"] == tasks[2].test["setup"] == "ITEMS = [('a', 3), ('b', 4)]"
    sanitized = data.load_tasks(str(fixtures_dir / "mbpp_sanitized.json"))
    assert all(len(t.public_test["asserts"]) == 1 and t.public_test["setup"] == t.test["setup"] for t in sanitized)
    # An assert that is not an equality keeps its condition and names its case.
    assert public.case_assert(2, "assert math.isclose(area(2), 12.56, rel_tol=0.01)") == \
        "assert math.isclose(area(2), 12.56, rel_tol=0.01), 'case 2'"
    assert public.describe_case({"kind": "asserts", "asserts": [public.case_assert(0, "assert ok(1)")]}, 0) == \
        ("ok(1)", None)
    with pytest.raises(ValueError, match="not a single assert"):
        public.case_assert(0, "x = 1")


def test_apps_public_tests_from_statements(fixtures_dir):
    tasks = {t.task_id: t for t in data.load_tasks(str(fixtures_dir / "apps_statements.jsonl"))}
    cf, atcoder, leetcode = tasks["apps/5001"], tasks["apps/5002"], tasks["apps/5003"]
    assert cf.public_test == {"kind": "stdio", "cases": [{"input": "3\n1 2 3\n", "output": "6\n"},
                                                         {"input": "1\n-5\n", "output": "-5\n"}]}
    # The explanation after the sample output's blank line is not part of the output.
    assert atcoder.public_test == {"kind": "stdio", "cases": [{"input": "abc\n", "output": "cba\n"}]}
    assert leetcode.public_test == {"kind": "call", "fn_name": "sumLargest", "cases": [
        {"args": [[3, 1, 2], 2], "expected": 5}, {"args": [[5], 1], "expected": 5}]}
    assert {t.metadata["public_source"] for t in tasks.values()} == {"statement"}
    # Statements without examples fall back to the first hidden case.
    old = data.load_tasks(str(fixtures_dir / "apps.jsonl"))
    assert [t.metadata["public_source"] for t in old] == ["first_test"] * 3
    assert all(t.public_test["cases"] == t.test["cases"][:1] for t in old)
    assert public.statement_call_examples("Input: s = \"ab\", flag = true\nOutput: null\nInput: 3\nOutput: [1,2]") == [
        {"args": ["ab", True], "expected": None}, {"args": [3], "expected": [1, 2]}]
    assert public.describe_case(leetcode.public_test, 1) == ("sumLargest([5], 1)", "5")
    assert public.describe_case(cf.public_test, 0) == ("3\n1 2 3\n", "6\n")
    assert public.describe_case(cf.public_test, 2) is None and public.describe_case(None, 0) is None


def test_tasks_without_public_tests_and_old_saved_tasks(humaneval):
    task = humaneval["HumanEval/38"]
    with pytest.raises(ValueError, match="has no public test"):
        data.to_request(task, "    return s\n", "r", public=True)
    saved = humaneval["HumanEval/0"].to_dict()
    assert data.Task.from_dict(saved) == humaneval["HumanEval/0"]
    del saved["public_test"]                                    # tasks saved before public tests existed
    assert data.Task.from_dict(saved).public_test is None
    with pytest.raises(ValueError, match="public_test kind"):
        data.Task(task_id="x", prompt="", test={"kind": "asserts", "asserts": []}, entry_point=None,
                  public_test={"kind": "nope"})


def test_public_tests_pass_with_every_reference_in_the_sandbox(executor, humaneval, fixtures_dir):
    """Every HumanEval canonical solution, MBPP and APPS reference passes its public test; a wrong
    program fails it, and the failure names the case and the actual value."""
    tasks = [t for t in humaneval.values() if t.public_test]
    for name in ("mbpp_full.jsonl", "mbpp_sanitized.json", "apps.jsonl", "apps_statements.jsonl"):
        tasks += data.load_tasks(str(fixtures_dir / name))
    requests = [data.to_request(t, t.reference, t.task_id, public=True) for t in tasks]
    he0 = humaneval["HumanEval/0"]
    requests.append(data.to_request(he0, "    return True\n", "wrong", public=True))
    results = executor.run(requests)
    bad = [(r.id, r.status, r.error_message) for r in results[:-1] if r.status != "passed"]
    assert not bad, bad
    assert all(r.tests_passed == r.tests_total == public.num_cases(t.public_test) for t, r in zip(tasks, results))
    wrong = results[-1]
    assert (wrong.status, wrong.tests_passed, wrong.tests_total, wrong.error_message) == \
        ("failed", 1, 2, "case 0: got True")
