"""Multi-host correctness with two local processes: the same experiment run as one process with 2 devices and as two
processes x 1 device (jax.distributed on 127.0.0.1, gloo collectives) gives the same results.json, and only
process 0 runs sandboxes and writes the workdir."""
import json
import os
import socket
import subprocess

import pytest
from conftest import REPO, main_cmd, run_env

# A shorter run than the shared tiny one (one iteration, fewer tasks and steps); still every stage: tokenizer and
# warm start, sampling + sandbox execution, DPO, reward model, RL with execution rewards, held-out evaluation.
OVERRIDES = ("--config.num_iterations=1", "--config.num_train_tasks=12", "--config.num_eval_tasks=8",
             "--config.sample_batch_size=32", "--config.tiny.warm_start_steps=30", "--config.train_steps=2",
             "--config.rlaif.reward_steps=2")
EXECUTOR_STARTED = "sandbox executor (gvisor) started on process 0 of"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single-process workdir, two-process workdir, [process 0 output, process 1 output]).

    The reference and the two-process job run at the same time: each often waits (compiling, barriers, sandboxes),
    so together they finish sooner on 2 cores than one after the other.
    """
    root = tmp_path_factory.mktemp("multihost")
    single, multi = str(root / "single"), str(root / "multi")
    logs = _run([(main_cmd(single, *OVERRIDES), run_env())] + _two_processes(multi), str(root / "first"))
    return single, multi, logs[1:]


def _two_processes(workdir):
    """The CLI as processes 0 and 1 of a jax.distributed job with 1 CPU device each: [(command, env)] * 2."""
    env = {**run_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    port = _free_port()
    return [(main_cmd(workdir, *OVERRIDES, "--distributed", f"--coordinator_address=127.0.0.1:{port}",
                      "--num_processes=2", f"--process_id={i}"), env) for i in range(2)]


def _run(commands, log_prefix):
    """Runs the commands concurrently (output to files: a full pipe must not stall one process of the job)."""
    procs, paths = [], []
    try:
        for i, (cmd, env) in enumerate(commands):
            paths.append(f"{log_prefix}.{i}.log")
            with open(paths[-1], "w") as out:
                procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait(timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = []
    for path in paths:
        with open(path) as f:
            logs.append(f.read())
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(log[-4000:] for log in logs)
    return logs


def test_two_processes_give_the_single_process_results(runs):
    single, multi, logs = runs
    a, b = _load(single), _load(multi)
    assert set(a["methods"]) == set(b["methods"]) == {"baseline", "dpo", "rlaif"}
    for method in a["methods"]:
        its_a, its_b = a["methods"][method]["iterations"], b["methods"][method]["iterations"]
        assert len(its_a) == len(its_b) == (1 if method == "baseline" else 2)
        for x, y in zip(its_a + [a["methods"][method]["final"]], its_b + [b["methods"][method]["final"]]):
            for key in ("pass@1", "pass@4", "execution_rate"):
                assert y[key] == pytest.approx(x[key], abs=1e-9), (method, key)
            assert y["error_frequencies"].keys() == x["error_frequencies"].keys()
            for key, value in x["error_frequencies"].items():
                assert y["error_frequencies"][key] == pytest.approx(value, abs=1e-9), (method, key)
            if "num_pairs" in x:
                assert y["num_pairs"] == x["num_pairs"] and y["train_samples"] == x["train_samples"]
                for key, losses in x["train"].items():  # same data, same steps: the same training curve
                    assert y["train"][key] == pytest.approx(losses, rel=1e-3, abs=1e-4), (method, key)
    # Not a vacuous match: the starting policy produced both runnable and crashing programs.
    initial = a["methods"]["baseline"]["final"]
    assert 0 < initial["execution_rate"] < 1
    assert a["methods"]["dpo"]["iterations"][1]["num_pairs"] > 0
    # The held-out programs themselves are the same, verdict for verdict.
    for stage in ("initial", os.path.join("dpo", "iter_1"), os.path.join("rlaif", "iter_1")):
        rows = []
        for workdir in (single, multi):
            with open(os.path.join(workdir, stage, "eval_samples.jsonl")) as f:
                rows.append([(r["task_id"], r["completion"], r["result"]["status"], r["result"]["error_type"])
                             for r in map(json.loads, f)])
        assert rows[0] == rows[1], stage


def test_only_process_zero_runs_sandboxes_and_writes(runs):
    _, multi, (log0, log1) = runs
    assert EXECUTOR_STARTED in log0
    assert EXECUTOR_STARTED not in log1
    assert "process 1: no sandbox executor here" in log1
    assert "jax.distributed: process 1 of 2, 1 local / 2 global devices" in log1
    # One log file, one report; no temporary files left by either process.
    assert os.path.exists(os.path.join(multi, "log.txt")) and os.path.exists(os.path.join(multi, "report.md"))
    leftovers = [os.path.join(d, n) for d, _, names in os.walk(multi) for n in names if ".tmp" in n]
    assert not leftovers, leftovers


def test_two_processes_resume_a_finished_run_without_redoing_it(runs):
    """Restarted, both processes take the same resume decisions (process 0 reads the state, broadcasts it)."""
    _, multi, _ = runs
    before = _load(multi)
    marker = os.path.join(multi, "dpo", "iter_1", "iteration.json")
    mtime = os.path.getmtime(marker)
    logs = _run(_two_processes(multi), multi + ".resume")
    for log in logs:  # nothing sampled, executed or trained again, on either process
        assert "training on" not in log and "samples; sampling" not in log, log[-3000:]
    assert os.path.getmtime(marker) == mtime
    assert _load(multi)["methods"] == before["methods"]
