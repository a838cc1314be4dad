"""pass@k against the exact combinatorial formula; execution rate and error buckets on hand-built results."""
import math
from fractions import Fraction

import pytest

from ieta_jax import evaluation


def exact_pass_at_k(n, c, k):
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 37])
def test_pass_at_k_matches_exact_formula(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert evaluation.pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # The binomials here have ~300 digits: the naive float ratio overflows, the product form does not.
    n, c, k = 1000, 7, 100
    assert math.comb(n, k) > 1e139
    assert evaluation.pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-12)
    assert evaluation.pass_at_k(200, 0, 100) == 0.0
    assert evaluation.pass_at_k(200, 101, 100) == 1.0
    assert evaluation.pass_at_k(10, 3, 1) == pytest.approx(0.3)


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 1, 0), (5.5, 1, 1)])
def test_pass_at_k_rejects_invalid(n, c, k):
    with pytest.raises(ValueError):
        evaluation.pass_at_k(n, c, k)


def test_pass_at_k_error_names_n_and_k():
    with pytest.raises(ValueError, match=r"n=3 .* k=10"):
        evaluation.pass_at_k(3, 1, 10)


def R(status, error_type=None):
    return {"status": status, "error_type": error_type}


RESULTS = [R("passed"), R("passed"), R("failed", "AssertionError"), R("error", "IndexError"),
           R("error", "IndexError"), R("error", "TypeError"), R("error", "ValueError"),
           R("error", "ZeroDivisionError"), R("error", "KeyError"), R("timeout"),
           R("syntax_error", "SyntaxError"), R("memory", "MemoryError"), R("sandbox_error", "SandboxError"),
           R("error", "RecursionError"), R("failed", "AssertionError"), R("passed")]


def test_execution_rate_and_error_frequencies_sum_to_one():
    n = len(RESULTS)
    assert evaluation.execution_rate(RESULTS) == 5 / n          # 3 passed + 2 failed
    freqs = evaluation.error_frequencies(RESULTS)
    assert list(freqs) == ["IndexError", "TypeError", "ValueError", "ZeroDivisionError", "Other"]
    assert freqs == {"IndexError": 2 / n, "TypeError": 1 / n, "ValueError": 1 / n,
                     "ZeroDivisionError": 1 / n, "Other": 6 / n}   # KeyError, timeout, syntax, memory, sandbox, Recursion
    assert evaluation.execution_rate(RESULTS) + sum(freqs.values()) == pytest.approx(1.0, abs=1e-12)


def test_error_types_has_every_raw_type():
    n = len(RESULTS)
    types = evaluation.error_types(RESULTS)
    assert types == {"AssertionError": 2 / n, "IndexError": 2 / n, "TypeError": 1 / n, "ValueError": 1 / n,
                     "ZeroDivisionError": 1 / n, "KeyError": 1 / n, "timeout": 1 / n, "syntax_error": 1 / n,
                     "memory": 1 / n, "sandbox_error": 1 / n, "RecursionError": 1 / n}
    assert sum(types.values()) == pytest.approx(1 - 3 / n)
    assert next(iter(types)) in ("AssertionError", "IndexError")   # most frequent first


def test_metrics_reject_empty_input():
    for fn in (evaluation.execution_rate, evaluation.error_frequencies, evaluation.error_types):
        with pytest.raises(ValueError):
            fn([])


def test_summarize_averages_tasks_and_refuses_large_k():
    by_task = {"a": [R("passed"), R("failed", "AssertionError"), R("error", "TypeError")],
               "b": [R("error", "IndexError")] * 3}
    m = evaluation.summarize(by_task, ks=(1, 2))
    assert m["pass_at_k"] == {"pass@1": pytest.approx((1 / 3 + 0) / 2),
                              "pass@2": pytest.approx((float(exact_pass_at_k(3, 1, 2)) + 0) / 2)}
    assert m["num_samples"] == 6 and m["num_tasks"] == 2
    assert m["execution_rate"] == pytest.approx(2 / 6)
    assert m["error_frequencies"]["IndexError"] == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="pass@4 needs at least 4 samples"):
        evaluation.summarize(by_task, ks=(1, 4))
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluation.summarize(by_task, ks=())


def test_ratio_stderr_with_one_unit_per_cluster_is_the_standard_error_of_a_mean():
    import numpy as np

    y = [1, 0, 0, 1, 1, 0, 1, 1]
    assert evaluation.ratio_stderr(y, [1] * len(y)) == pytest.approx(np.std(y, ddof=1) / math.sqrt(len(y)))


def test_ratio_stderr_counts_clusters_not_units():
    # Every cluster repairs exactly half of its failures: no spread between clusters, so no uncertainty from them.
    assert evaluation.ratio_stderr([1, 3, 5], [2, 6, 10]) == 0.0
    # 10 failures, all repaired in one task of four and none in the others: the spread is between tasks, far
    # wider than the binomial sqrt(R (1 - R) / 20) = 0.112 that treats the 20 failures as independent.
    se = evaluation.ratio_stderr([10, 0, 0, 0], [10, 4, 3, 3])
    assert se == pytest.approx(math.sqrt(4 / 3 * ((10 - 5) ** 2 + 2 ** 2 + 1.5 ** 2 + 1.5 ** 2)) / 20)
    assert se > 0.2
    # Tasks without turn-1 failures are clusters too (residual 0), only the m / (m - 1) factor sees them.
    assert evaluation.ratio_stderr([10, 0, 0, 0, 0], [10, 4, 3, 3, 0]) == pytest.approx(
        se * math.sqrt((5 / 4) / (4 / 3)))


def test_ratio_stderr_is_undefined_without_two_clusters_or_failures():
    assert evaluation.ratio_stderr([1], [2]) is None
    assert evaluation.ratio_stderr([0, 0], [0, 0]) is None
    with pytest.raises(ValueError, match="2 numerators but 3 denominators"):
        evaluation.ratio_stderr([0, 1], [1, 1, 1])
