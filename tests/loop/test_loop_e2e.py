"""The tiny end-to-end run: results.json, report.md, plots and saved policies agree with the raw samples."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, run_env  # tests/loop/conftest.py (module level: another dir's conftest may be loaded later)

METHODS = ("baseline", "dpo", "rlaif")


def _load(path):
    with open(path) as f:
        return json.load(f)


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _metrics_from_samples(rows):
    """pass@1, pass@4 (n = 4), execution rate and error buckets, computed here from the raw sandbox verdicts."""
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task_id"], []).append(r["result"]["status"])
    p1 = np.mean([sum(s == "passed" for s in v) / len(v) for v in by_task.values()])
    p4 = np.mean([float(any(s == "passed" for s in v)) for v in by_task.values()])
    statuses = [r["result"]["status"] for r in rows]
    exec_rate = sum(s in ("passed", "failed") for s in statuses) / len(statuses)
    buckets = {}
    for r in rows:
        res = r["result"]
        if res["status"] in ("passed", "failed"):
            continue
        et = res["error_type"] if res["status"] == "error" else None
        key = et if et in ("IndexError", "TypeError", "ValueError", "ZeroDivisionError") else "Other"
        buckets[key] = buckets.get(key, 0) + 1 / len(rows)
    return p1, p4, exec_rate, buckets


def test_results_match_the_raw_samples(tiny_run):
    results = _load(os.path.join(tiny_run, "results.json"))
    assert set(results["methods"]) == set(METHODS)
    initial_rows = _jsonl(os.path.join(tiny_run, "initial", "eval_samples.jsonl"))
    assert len(initial_rows) == 12 * 4
    stage = {"baseline": os.path.join(tiny_run, "initial"), "dpo": os.path.join(tiny_run, "dpo", "iter_2"),
             "rlaif": os.path.join(tiny_run, "rlaif", "iter_2")}
    for method in METHODS:
        m = results["methods"][method]
        rows = _jsonl(os.path.join(stage[method], "eval_samples.jsonl"))
        p1, p4, exec_rate, buckets = _metrics_from_samples(rows)
        final = m["final"]
        assert final["pass@1"] == pytest.approx(p1)
        assert final["pass@4"] == pytest.approx(p4)
        assert final["execution_rate"] == pytest.approx(exec_rate)
        for key, value in final["error_frequencies"].items():
            assert value == pytest.approx(buckets.get(key, 0.0)), (method, key)
        assert exec_rate + sum(final["error_frequencies"].values()) == pytest.approx(1.0)
        # Iteration 0 of every method is the shared starting policy.
        assert m["iterations"][0]["pass@1"] == results["methods"]["baseline"]["final"]["pass@1"]
    for method in ("dpo", "rlaif"):
        its = results["methods"][method]["iterations"]
        assert [it["iteration"] for it in its] == [0, 1, 2]
        for it in its[1:]:
            assert set(it["time_s"]) >= {"sampling", "execution", "training", "evaluation"}
            # DPO and the reward model train 3 steps when the iteration produced pairs (none without).
            steps = 3 if it["num_pairs"] else 0
            key = "loss" if method == "dpo" else "reward_model_loss"
            assert len(it["train"][key]) == steps and all(np.isfinite(it["train"][key]))
    # RL runs every iteration, each its own 3 steps (not a replay of the previous iteration's fit).
    rl = [it["train"]["loss"] for it in results["methods"]["rlaif"]["iterations"][1:]]
    assert [len(x) for x in rl] == [3, 3] and rl[0] != rl[1]
    assert results["methods"]["dpo"]["iterations"][1]["num_pairs"] > 0
    # Every executed program is the task prompt followed by the sampled completion.
    from ieta_jax import data

    tasks = {t.task_id: t for t in data.load_tasks("synthetic", split="train", seed=0)}
    train_rows = _jsonl(os.path.join(tiny_run, "initial", "train_samples.jsonl"))
    assert len(train_rows) == 24 * 4
    for r in train_rows:
        assert r["program"] == tasks[r["task_id"]].prompt + r["completion"]


def test_pairs_prefer_the_program_that_got_further(tiny_run):
    rank = {"passed": 3, "failed": 2, "error": 1, "timeout": 0, "memory": 0, "syntax_error": 0}
    pairs = _jsonl(os.path.join(tiny_run, "dpo", "iter_1", "pairs.jsonl"))
    for p in pairs:
        c, r = p["chosen_result"], p["rejected_result"]
        assert (rank[c["status"]], c["tests_passed"]) >= (rank[r["status"]], r["tests_passed"]), p["reason"]
        assert p["chosen_program"] != p["rejected_program"]


def test_log_splits_time_between_sampling_execution_and_training(tiny_run):
    """The per-iteration log line reports the same seconds as results.json's time_s (rounded to 0.1 s)."""
    import re

    with open(os.path.join(tiny_run, "log.txt")) as f:
        log = f.read()
    pattern = re.compile(r"(\w+) iter (\d+): .* \| time: sampling ([\d.]+)s, execution \(not overlapped\) ([\d.]+)s, "
                         r"training ([\d.]+)s, evaluation ([\d.]+)s")
    logged = {(m[1], int(m[2])): [float(x) for x in m.groups()[2:]] for m in pattern.finditer(log)}
    results = _load(os.path.join(tiny_run, "results.json"))
    expected = {(method, it["iteration"]): it["time_s"] for method in ("dpo", "rlaif")
                for it in results["methods"][method]["iterations"][1:]}
    assert set(logged) == set(expected) and len(expected) == 4
    for key, times in expected.items():
        values = [times[k] for k in ("sampling", "execution", "training", "evaluation")]
        assert logged[key] == pytest.approx(values, abs=0.051), key
        assert values[2] > 0 and values[3] > 0


def test_report_tables_and_plots_come_from_results(tiny_run):
    results = _load(os.path.join(tiny_run, "results.json"))
    with open(os.path.join(tiny_run, "report.md")) as f:
        md = f.read()
    # The run's pass_at_k (1, 4) beside the summary's 1, 10, 100.
    assert "| Method | Pass@1 | Pass@4 | Pass@10 | Pass@100 | Execution Rate |" in md
    for method in METHODS:
        final = results["methods"][method]["final"]
        # pass@10/@100 need 10/100 samples per task: the run drew 4, so they are n/a, never invented.
        assert (f"| {method} | {final['pass@1']:.3f} | {final['pass@4']:.3f} | n/a | n/a | "
                f"{final['execution_rate']:.3f} |") in md
        assert f"## Errors: {method}" in md
    dpo = results["methods"]["dpo"]  # noqa: F841
    a = dpo["iterations"][0]["error_frequencies"]["Other"]
    b = dpo["final"]["error_frequencies"]["Other"]
    assert f"| Other | {a:.3f} | {b:.3f} | {a - b:+.3f}" in md
    for name in ("pass_rates.png", "execution_rates.png", "error_frequencies.png", "training_loss.png",
                 "method_comparison.png"):
        path = os.path.join(tiny_run, name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in md
    # The report CLI rebuilds the summary table from results.json alone, into another directory.
    out_dir = os.path.join(os.path.dirname(tiny_run), "report_again")
    proc = subprocess.run([sys.executable, "-m", "ieta_jax.report", "--results", os.path.join(tiny_run, "results.json"),
                           "--out_dir", out_dir], cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(out_dir, "report.md")) as f:
        again = f.read()
    for method in METHODS:
        final = results["methods"][method]["final"]
        assert (f"| {method} | {final['pass@1']:.3f} | {final['pass@4']:.3f} | n/a | n/a | "
                f"{final['execution_rate']:.3f} |") in again


def test_saved_policy_loads_in_transformers_with_the_same_logits(tiny_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ieta_jax import models

    path = os.path.join(tiny_run, "dpo", "iter_1", "policy")
    tok = AutoTokenizer.from_pretrained(path)
    text = 'def add_to_all(xs):\n    """Return a new list with 3 added to every element of xs."""\n'
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    ours = np.asarray(models.from_pretrained(path)(np.asarray([ids])))
    hf = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # Training changed the policy: it is not the warm-started starting point any more.
    start = np.asarray(models.from_pretrained(os.path.join(tiny_run, "tiny_model"))(np.asarray([ids])))
    assert np.abs(start - ours).max() > 1e-4
