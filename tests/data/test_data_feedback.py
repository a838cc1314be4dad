"""Preference pairs and execution rewards on hand-built sandbox results."""
import math

import pytest

from ieta_jax import data, feedback

TASK = data.Task(task_id="t/0", prompt="def f(xs):\n    \"\"\"doc\"\"\"\n",
                 test={"kind": "asserts", "asserts": ["assert f([]) == 0"] * 4, "setup": ""}, entry_point="f")


def R(status, passed=0, total=4, error_type=None, line=None):
    return {"id": "x", "status": status, "tests_passed": passed, "tests_total": total,
            "error_type": error_type, "error_line": line, "trace": {"coverage": {"3": 1}}}


def pairs_for(results, **kw):
    programs = [TASK.prompt + f"    return {i}\n" for i in range(len(results))]
    return feedback.build_pairs(TASK, programs, results, max_pairs=None, **kw)


def winner_loser(pairs):
    return {(p.chosen.strip(), p.rejected.strip()) for p in pairs}


@pytest.mark.parametrize("better,worse,rule", [
    (R("passed", 4), R("failed", 3, error_type="AssertionError"), "passed"),
    (R("passed", 4), R("syntax_error", error_type="SyntaxError"), "passed"),
    (R("failed", 2, error_type="AssertionError"), R("failed", 1, error_type="AssertionError"), "more_tests_passed"),
    (R("error", 3, error_type="IndexError", line=3), R("failed", 1, error_type="AssertionError"), "more_tests_passed"),
    (R("timeout", 2), R("error", 1, error_type="TypeError", line=4), "more_tests_passed"),
    (R("failed", 0, error_type="AssertionError"), R("error", 0, error_type="IndexError", line=3), "failed_over_error"),
    (R("error", 1, error_type="KeyError", line=3), R("timeout", 1), "error_over_timeout"),
    (R("error", 0, error_type="ValueError", line=3), R("syntax_error", error_type="SyntaxError"),
     "error_over_syntax_error"),
    (R("failed", 0, error_type="AssertionError"), R("memory", 0, error_type="MemoryError"), "failed_over_memory"),
])
def test_pair_ordering_rules(better, worse, rule):
    for order in ([better, worse], [worse, better]):
        pairs = pairs_for(order)
        assert len(pairs) == 1
        p = pairs[0]
        assert p.chosen_result is better and p.rejected_result is worse
        assert p.reason.startswith(rule + ":"), p.reason
        assert feedback.compare(better, worse)[0] == 1 and feedback.compare(worse, better)[0] == -1


@pytest.mark.parametrize("a,b", [
    (R("passed", 4), R("passed", 4)),
    (R("failed", 2, error_type="AssertionError"), R("failed", 2, error_type="AssertionError")),
    (R("timeout", 0), R("syntax_error", error_type="SyntaxError")),
    (R("timeout", 0), R("memory", 0)),
    (R("error", 1, error_type="IndexError", line=3), R("error", 1, error_type="TypeError", line=3)),
    (R("error", 1, error_type="IndexError", line=None), R("error", 1, error_type="TypeError", line=7)),
    # error_line is self-reported by the program: a later (claimed) line must not win a pair
    (R("error", 0, error_type="TypeError", line=5), R("error", 0, error_type="IndexError", line=3)),
    (R("error", 0, error_type="TypeError", line=10 ** 6), R("error", 0, error_type="IndexError", line=1)),
    (R("sandbox_error", 0), R("failed", 0, error_type="AssertionError")),
])
def test_ties_and_sandbox_errors_are_never_paired(a, b):
    assert pairs_for([a, b]) == []


def test_pairs_keep_programs_results_traces_and_completions():
    results = [R("error", 0, error_type="IndexError", line=3), R("passed", 4)]
    programs = [TASK.prompt + "    return xs[9]\n", TASK.prompt + "    return len(xs)\n"]
    (p,) = feedback.build_pairs(TASK, programs, results)
    assert p.task_id == "t/0" and p.prompt == TASK.prompt
    assert p.chosen == "    return len(xs)\n" and p.rejected == "    return xs[9]\n"
    assert p.chosen_program == programs[1] and p.rejected_program == programs[0]
    assert p.rejected_result["trace"] == {"coverage": {"3": 1}}
    assert p.reason == "passed: passed 4/4 > error 0/4 IndexError@3"
    assert p.to_dict()["rejected_result"]["error_type"] == "IndexError"


def test_identical_programs_are_deduplicated():
    programs = [TASK.prompt + "    return 0\n", TASK.prompt + "    return 0\n", TASK.prompt + "    return 1\n"]
    results = [R("failed", 1, error_type="AssertionError"), R("failed", 1, error_type="AssertionError"),
               R("passed", 4)]
    pairs = feedback.build_pairs(TASK, programs, results)
    assert len(pairs) == 1 and pairs[0].rejected_program == programs[0]


def test_max_pairs_prefers_passing_and_covers_distinct_programs():
    results = [R("passed", 4), R("failed", 3, error_type="AssertionError"), R("failed", 2, error_type="AssertionError"),
               R("error", 1, error_type="TypeError", line=2), R("syntax_error", error_type="SyntaxError")]
    all_pairs = pairs_for(results)
    assert len(all_pairs) == 10          # a strict total order on 5 programs
    top = feedback.build_pairs(TASK, [TASK.prompt + f"    return {i}\n" for i in range(5)], results,
                               max_pairs=4)
    assert len(top) == 4
    assert all(p.chosen_result["status"] == "passed" for p in top)
    assert {p.rejected.strip() for p in top} == {"return 1", "return 2", "return 3", "return 4"}
    assert feedback.build_pairs(TASK, [TASK.prompt] * 0, [], max_pairs=4) == []
    with pytest.raises(ValueError):
        feedback.build_pairs(TASK, [TASK.prompt], [], max_pairs=4)


def test_programs_must_start_with_the_prefix_unless_completions_given():
    with pytest.raises(ValueError, match="program prefix"):
        feedback.build_pairs(TASK, ["x = 1\n", "x = 2\n"], [R("passed", 4), R("failed", 0)])
    pairs = feedback.build_pairs(TASK, ["x = 1\n", "x = 2\n"],
                                 [R("passed", 4), R("failed", 0, error_type="AssertionError")],
                                 completions=["c1", "c2"])
    assert [(p.chosen, p.rejected) for p in pairs] == [("c1", "c2")]


def test_execution_reward_scale():
    assert feedback.execution_reward(R("passed", 4)) == 1.0
    assert feedback.execution_reward(R("failed", 0)) == pytest.approx(-0.3)
    assert feedback.execution_reward(R("failed", 3)) == pytest.approx(-0.3 + 0.5 * 0.75)
    assert feedback.execution_reward(R("error", 2, error_type="IndexError")) == pytest.approx(-0.6 + 0.25)
    assert feedback.execution_reward(R("timeout", 1)) == pytest.approx(-0.8 + 0.125)
    assert feedback.execution_reward(R("memory", 0)) == pytest.approx(-0.8)
    assert feedback.execution_reward(R("syntax_error", 0, total=0)) == -1.0
    assert math.isnan(feedback.execution_reward(R("sandbox_error", 0)))  # no reward: never above a failing program's
    assert feedback.execution_reward(R("failed", 0, total=0)) == pytest.approx(-0.3)
    # Every non-passing outcome is below a pass; at zero progress the classes are ordered.
    ladder = [R("passed", 4), R("failed", 0), R("error", 0), R("timeout", 0), R("syntax_error", 0)]
    rewards = [feedback.execution_reward(r) for r in ladder]
    assert rewards == sorted(rewards, reverse=True) and len(set(rewards)) == 5
    assert max(feedback.execution_reward(R("failed", 3, total=4)), 0) < 1.0
    with pytest.raises(ValueError, match="unknown status"):
        feedback.execution_reward(R("weird"))


def test_works_with_sandbox_result_objects():
    from sandbox import Result
    a = Result(id="a", status="passed", tests_passed=4, tests_total=4)
    b = Result(id="b", status="error", error_type="ZeroDivisionError", error_line=3, tests_passed=1, tests_total=4)
    pairs = feedback.build_pairs(TASK, [TASK.prompt + "a", TASK.prompt + "b"], [b, a])
    assert len(pairs) == 1 and pairs[0].chosen_result is a
    assert feedback.execution_reward(b) == pytest.approx(-0.6 + 0.125)
    assert pairs[0].to_dict()["chosen_result"]["id"] == "a"
