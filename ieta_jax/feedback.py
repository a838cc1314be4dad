"""Execution feedback: preference pairs and scalar rewards from sandbox results.

Both read only the result-line fields of a sandbox `Result` (status, error_type, error_line,
tests_passed, tests_total, trace), so `sandbox.Result` objects and their `to_dict()` dicts work alike.

Progress order (used for pairs). A program A is preferred over B when A "got further":
  1. passed beats everything that did not pass;
  2. otherwise the larger fraction of tests passed wins;
  3. at equal fractions, by outcome class: failed (ran, wrong answer) > error (runtime exception)
     > timeout / memory / syntax_error (equal to each other).
Anything else is a tie and never paired (two runtime errors at equal fractions too: `error_line` is the
program's own claim, not the judge's, so no rule may rank by it). `sandbox_error` results are infrastructure failures, not the
program's, and are never paired.

Reward scale (`execution_reward`), in the spirit of CodeRL (+1 / -0.3 / -0.6 / -1) with RLTF-style
partial credit: passed 1.0; otherwise a class penalty plus 0.5 x the fraction of tests passed:

    status        penalty   range
    failed         -0.3     [-0.3, 0.2)
    error          -0.6     [-0.6, -0.1)
    timeout/memory -0.8     [-0.8, -0.3)
    syntax_error   -1.0     -1.0
    sandbox_error   NaN     no reward: the sandbox could not judge it. The RL trainer leaves a NaN out of its group
                            statistics (advantage 0 when nothing else scores the completion). A reward of 0.0, above
                            every failing one, paid a failing program for any way it found to break its sandbox.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

PASSED_REWARD = 1.0
PARTIAL_CREDIT = 0.5
STATUS_PENALTY = {"failed": -0.3, "error": -0.6, "timeout": -0.8, "memory": -0.8,
                  "syntax_error": -1.0}
# Outcome classes for rule 3 of the progress order.
_CLASS_RANK = {"passed": 3, "failed": 2, "error": 1, "timeout": 0, "memory": 0, "syntax_error": 0}
DEFAULT_MAX_PAIRS = 8


def _get(result: Any, name: str, default: Any = None) -> Any:
    if isinstance(result, dict):
        return result.get(name, default)
    return getattr(result, name, default)


def _status(result: Any) -> str:
    status = _get(result, "status")
    if status not in (*_CLASS_RANK, "sandbox_error"):
        raise ValueError(f"result {_get(result, 'id')!r} has unknown status {status!r}")
    return status


def fraction_passed(result: Any) -> float:
    """Fraction of the result's tests that passed (1.0 for passed, 0.0 when there were none)."""
    if _status(result) == "passed":
        return 1.0
    total = int(_get(result, "tests_total", 0) or 0)
    return min(int(_get(result, "tests_passed", 0) or 0), total) / total if total > 0 else 0.0


def execution_reward(result: Any) -> float:
    """Scalar reward for one sandbox result (scale in the module docstring)."""
    status = _status(result)
    if status == "passed":
        return PASSED_REWARD
    if status == "sandbox_error":
        return float("nan")
    if status == "syntax_error":
        return STATUS_PENALTY["syntax_error"]
    return STATUS_PENALTY[status] + PARTIAL_CREDIT * fraction_passed(result)


def compare(a: Any, b: Any) -> tuple[int, str]:
    """(+1 if `a` got further than `b`, -1 if `b` did, 0 for a tie) and the deciding rule's name."""
    sa, sb = _status(a), _status(b)
    if "sandbox_error" in (sa, sb):
        return 0, "sandbox_error"
    if (sa == "passed") != (sb == "passed"):
        return (1 if sa == "passed" else -1), "passed"
    if sa == "passed":
        return 0, "both_passed"
    fa, fb = fraction_passed(a), fraction_passed(b)
    if fa != fb:
        return (1 if fa > fb else -1), "more_tests_passed"
    ra, rb = _CLASS_RANK[sa], _CLASS_RANK[sb]
    if ra != rb:
        return (1 if ra > rb else -1), f"{sa if ra > rb else sb}_over_{sb if ra > rb else sa}"
    return 0, "tie"


@dataclasses.dataclass
class Pair:
    """A preference pair: `chosen` got further than `rejected` on the same task.

    Completions are what follows the task's program prefix (what a trainer scores); programs are the
    full sources that ran; results are the sandbox results (with traces when captured).
    """

    task_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_program: str
    rejected_program: str
    chosen_result: Any
    rejected_result: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        def res(r):
            return r.to_dict() if hasattr(r, "to_dict") else dict(r)
        return {"task_id": self.task_id, "prompt": self.prompt, "chosen": self.chosen,
                "rejected": self.rejected, "chosen_program": self.chosen_program,
                "rejected_program": self.rejected_program, "chosen_result": res(self.chosen_result),
                "rejected_result": res(self.rejected_result), "reason": self.reason}


def _describe(result: Any) -> str:
    status = _status(result)
    text = f"{status} {int(_get(result, 'tests_passed', 0) or 0)}/{int(_get(result, 'tests_total', 0) or 0)}"
    if _get(result, "error_type") and status != "passed":
        text += f" {_get(result, 'error_type')}"
        if _get(result, "error_line") is not None:
            text += f"@{_get(result, 'error_line')}"
    return text


def build_pairs(task: Any, programs: Sequence[str], results: Sequence[Any], *,
                max_pairs: int | None = DEFAULT_MAX_PAIRS,
                completions: Sequence[str] | None = None) -> list[Pair]:
    """Preference pairs among the G samples of one task.

    Args:
      task: the `data.Task` the samples answer.
      programs: the full programs that ran, one per sample.
      results: their sandbox results, same order.
      max_pairs: keep at most this many pairs (None: all).
      completions: the completions behind the programs; by default each program minus the task's
        program prefix (an error if a program does not start with it).

    Identical programs are deduplicated (first occurrence kept). Pairs are ordered so that the
    strongest signal comes first: pairs with a passing program, then by reward gap; within that,
    pairs that bring in programs not yet used come before repeats, so a small `max_pairs` still
    covers many distinct programs.
    """
    if len(programs) != len(results):
        raise ValueError(f"task {task.task_id!r}: {len(programs)} programs but {len(results)} results")
    if completions is None:
        prefix = task.prefix
        for i, p in enumerate(programs):
            if not p.startswith(prefix):
                raise ValueError(f"task {task.task_id!r}: program {i} does not start with the task's "
                                 "program prefix; pass completions= explicitly")
        completions = [p[len(prefix):] for p in programs]
    elif len(completions) != len(programs):
        raise ValueError(f"task {task.task_id!r}: {len(completions)} completions for {len(programs)} programs")
    if max_pairs is not None and max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0 or None, got {max_pairs}")

    seen: set[str] = set()
    unique = []
    for i, program in enumerate(programs):
        if program not in seen and _status(results[i]) != "sandbox_error":
            seen.add(program)
            unique.append(i)

    candidates = []
    for x, i in enumerate(unique):
        for j in unique[x + 1:]:
            order, rule = compare(results[i], results[j])
            if order == 0:
                continue
            win, lose = (i, j) if order > 0 else (j, i)
            gap = execution_reward(results[win]) - execution_reward(results[lose])
            candidates.append((_status(results[win]) != "passed", -gap, win, lose, rule))
    candidates.sort()

    selected, used = [], set()
    limit = len(candidates) if max_pairs is None else max_pairs
    for fresh_only in (True, False):
        for cand in candidates:
            if len(selected) >= limit:
                break
            if cand in selected:
                continue
            _, _, win, lose, _ = cand
            if fresh_only and (win in used and lose in used):
                continue
            selected.append(cand)
            used.update((win, lose))
    selected.sort(key=candidates.index)

    return [Pair(task_id=task.task_id, prompt=task.prompt, chosen=completions[win],
                 rejected=completions[lose], chosen_program=programs[win],
                 rejected_program=programs[lose], chosen_result=results[win],
                 rejected_result=results[lose],
                 reason=f"{rule}: {_describe(results[win])} > {_describe(results[lose])}")
            for _, _, win, lose, rule in selected]
