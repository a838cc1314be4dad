"""HumanEval: every canonical solution passes in gVisor; injected bugs get exact status/type/line."""
import pytest

from sandbox.corpus import buggy_variants, humaneval_request, load_humaneval


@pytest.fixture(scope="module")
def problems():
    return load_humaneval()


def test_all_164_canonical_solutions_pass_in_gvisor(gvisor_executor, problems):
    assert len(problems) == 164
    results = gvisor_executor.run([humaneval_request(p) for p in problems])
    bad = [(r.id, r.status, r.error_type, r.error_message) for r in results if r.status != "passed"]
    assert bad == []
    assert all(r.isolation == "gvisor" and r.tests_passed == r.tests_total >= 1 for r in results)
    # check() bodies are split into their top-level assert statements
    by_id = {r.id: r for r in results}
    assert by_id["HumanEval/0"].tests_total == 7
    assert by_id["HumanEval/32"].tests_total == 1      # a single for-loop of asserts is one case


def _check_variants(executor, problems):
    pairs = [v for p in problems for v in buggy_variants(p)]
    results = executor.run([req for req, _ in pairs])
    wrong = []
    for r, (req, want) in zip(results, pairs):
        got = {k: getattr(r, k) for k in want}
        if got != want or r.tests_passed >= r.tests_total:  # (some checks contain `assert True` lines)
            wrong.append((r.id, got, want, r.error_message))
    assert wrong == []


def test_buggy_variants_sample_in_gvisor(gvisor_executor, problems):
    _check_variants(gvisor_executor, problems[::8])


def test_buggy_variants_all_problems_process_backend(process_executor, problems):
    _check_variants(process_executor, problems)


def test_wrong_completion_partial_credit(gvisor_executor, problems):
    # HumanEval/0 has_close_elements with a strict-vs-nonstrict threshold bug: exact partial count.
    p = problems[0]
    buggy = p["prompt"] + "    return any(abs(a - b) < threshold / 2 for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    [r] = gvisor_executor.run([humaneval_request(p, buggy, rid="he0-bug")])
    assert r.status == "failed" and r.error_type == "AssertionError"
    assert r.tests_total == 7 and 0 < r.tests_passed < 7
