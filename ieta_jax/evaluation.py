"""Metrics over sandbox results: pass@k, execution rate, error frequencies.

Results are sandbox `Result` objects or their dicts (only `status` and `error_type` are read).

  execution_rate      fraction of samples with status passed or failed (ran without a runtime error)
  error_frequencies   fraction in each of ERROR_BUCKETS: IndexError, TypeError, ValueError,
                      ZeroDivisionError (status "error" with that exception type) and Other (every
                      other sample that neither passed nor failed: other exceptions, timeouts, memory,
                      syntax errors, sandbox errors). execution_rate + sum(error_frequencies) == 1.
  error_types         fraction of samples per raw failure type (the exception name, AssertionError for
                      failed tests, else the status: "timeout", "memory", ...); passed samples excluded.
"""
from __future__ import annotations

import collections
import math
from typing import Any, Iterable, Mapping, Sequence

ERROR_BUCKETS = ("IndexError", "TypeError", "ValueError", "ZeroDivisionError", "Other")
_RAN = ("passed", "failed")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate 1 - C(n-c, k) / C(n, k) for one task with n samples, c correct.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
    Raises ValueError when n < k (too few samples to estimate pass@k) or on invalid counts.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or int(v) != v:
            raise ValueError(f"pass_at_k: {name} must be an integer, got {v!r}")
    n, c, k = int(n), int(c), int(k)
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"pass_at_k: n={n} samples are fewer than k={k}; pass@{k} needs at least {k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} correct must be in [0, n={n}]")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean over tasks of pass_at_k, from (n, c) per task."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("mean_pass_at_k: no tasks")
    return sum(values) / len(values)


def ratio_stderr(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """Standard error of the ratio R = sum(y) / sum(x) over clusters i (here tasks: y_i episodes repaired, x_i
    episodes failing turn 1), by linearisation (Cochran, "Sampling Techniques", 3rd ed. 1977, sec. 6.4):

        SE(R) = sqrt(m / (m - 1) * sum_i (y_i - R x_i)^2) / sum_i x_i        over all m clusters

    A task's episodes share its prompt and difficulty, so they are not independent draws; the binomial
    sqrt(R (1 - R) / sum(x)) would understate the uncertainty when failures cluster in a few tasks. With one
    unit per cluster (every x_i = 1) this is the plain standard error of a mean, std(y, ddof=1) / sqrt(m).
    None when fewer than 2 clusters or sum(x) == 0; 0 when every cluster has the same ratio (e.g. nothing repaired
    anywhere), where the linearised estimate says nothing about the uncertainty.
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"ratio_stderr: {len(numerators)} numerators but {len(denominators)} denominators")
    m, total = len(denominators), float(sum(denominators))
    if m < 2 or total <= 0:
        return None
    r = sum(numerators) / total
    residuals = sum((y - r * x) ** 2 for y, x in zip(numerators, denominators))
    return math.sqrt(m / (m - 1) * residuals) / total


def _get(result: Any, name: str) -> Any:
    return result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)


def _nonempty(results: Sequence[Any], what: str) -> Sequence[Any]:
    results = list(results)
    if not results:
        raise ValueError(f"{what}: no results")
    return results


def execution_rate(results: Sequence[Any]) -> float:
    """Fraction of samples whose status is passed or failed."""
    results = _nonempty(results, "execution_rate")
    return sum(_get(r, "status") in _RAN for r in results) / len(results)


def error_bucket(result: Any) -> str | None:
    """The ERROR_BUCKETS entry of a sample, or None if it ran (passed or failed)."""
    status = _get(result, "status")
    if status in _RAN:
        return None
    error_type = _get(result, "error_type")
    if status == "error" and error_type in ERROR_BUCKETS[:-1]:
        return error_type
    return "Other"


def error_frequencies(results: Sequence[Any]) -> dict[str, float]:
    """Fraction of samples in each error bucket (sums to 1 - execution_rate)."""
    results = _nonempty(results, "error_frequencies")
    counts = collections.Counter(error_bucket(r) for r in results)
    return {b: counts.get(b, 0) / len(results) for b in ERROR_BUCKETS}


def failure_type(result: Any) -> str | None:
    """The raw failure type of a sample (None if it passed)."""
    status = _get(result, "status")
    if status == "passed":
        return None
    if status in ("failed", "error"):
        return _get(result, "error_type") or ("AssertionError" if status == "failed" else "Exception")
    return status


def error_types(results: Sequence[Any]) -> dict[str, float]:
    """Fraction of all samples per raw failure type, most frequent first."""
    results = _nonempty(results, "error_types")
    counts = collections.Counter(t for t in map(failure_type, results) if t is not None)
    return {t: c / len(results) for t, c in counts.most_common()}


def summarize(results_by_task: Mapping[str, Sequence[Any]], ks: Sequence[int] = (1,)) -> dict[str, Any]:
    """The headline metrics for samples grouped by task.

    Refuses (ValueError naming the tasks) any k larger than the samples of some task.
    """
    if not results_by_task:
        raise ValueError("summarize: no tasks")
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"summarize: ks must be positive integers, got {ks}")
    short = {tid: len(rs) for tid, rs in results_by_task.items() if len(rs) < max(ks)}
    if short:
        names = ", ".join(f"{t} ({n})" for t, n in list(short.items())[:5])
        raise ValueError(f"pass@{max(ks)} needs at least {max(ks)} samples per task, but {len(short)} "
                         f"task(s) have fewer: {names}{' ...' if len(short) > 5 else ''}")
    counts = [(len(rs), sum(_get(r, "status") == "passed" for r in rs))
              for rs in results_by_task.values()]
    flat = [r for rs in results_by_task.values() for r in rs]
    return {
        "pass_at_k": {f"pass@{k}": mean_pass_at_k(counts, k) for k in ks},
        "execution_rate": execution_rate(flat),
        "error_frequencies": error_frequencies(flat),
        "error_types": error_types(flat),
        "num_samples": len(flat),
        "num_tasks": len(results_by_task),
    }
