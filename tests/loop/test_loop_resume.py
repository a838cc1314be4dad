"""kill -9 in the middle of a run, restart with the same command: it resumes and ends with the same numbers."""
import json
import os
import shutil
import signal
import subprocess
import time

from conftest import REPO, main_cmd, run_env


def test_resume_after_kill_9(tiny_run, tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    # Reuse the cached warm-started tiny model (the runner's own cache), so only the loop is re-run here.
    shutil.copytree(os.path.join(tiny_run, "tiny_model"), os.path.join(workdir, "tiny_model"))
    cmd = main_cmd(workdir, "--config.method=dpo")
    proc = subprocess.Popen(cmd, cwd=REPO, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    # sampling done (the stage writes its samples, then their .time.json: a stage is finished when both exist)
    marker = os.path.join(workdir, "initial", "train_samples.jsonl.time.json")
    deadline = time.time() + 300
    while not os.path.exists(marker):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the run never reached the training stage"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    assert os.path.exists(os.path.join(workdir, "initial", "eval.json"))
    eval_mtime = os.path.getmtime(os.path.join(workdir, "initial", "eval.json"))

    done = subprocess.run(cmd, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # Finished stages were not redone ...
    assert os.path.getmtime(os.path.join(workdir, "initial", "eval.json")) == eval_mtime
    with open(os.path.join(workdir, "log.txt")) as f:
        assert "samples already in" in f.read()
    # ... and the interrupted run ends where the uninterrupted one did (same samples, training and evaluation).
    with open(os.path.join(workdir, "results.json")) as f:
        resumed = json.load(f)["methods"]["dpo"]
    with open(os.path.join(tiny_run, "results.json")) as f:
        reference = json.load(f)["methods"]["dpo"]
    assert resumed["final"] == reference["final"]
    assert resumed["iterations"][1]["train"]["loss"] == reference["iterations"][1]["train"]["loss"]

    # A restart with a different config is refused instead of mixing two experiments in one workdir.
    other = subprocess.run(cmd + ["--config.dpo.beta=0.5"], cwd=REPO, env=run_env(), capture_output=True,
                           text=True, timeout=300)
    assert other.returncode == 2 and other.stderr.strip().splitlines() == [
        f"error: {workdir} holds a run with another config: dpo.beta (0.1 -> 0.5); use a new --workdir or restore "
        "those values"]
