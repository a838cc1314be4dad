"""Every user mistake at start-up: one line on stderr naming what to fix, exit 2, nothing written (issue 14)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_env

MBPP = os.path.join(REPO, "tests", "data", "fixtures", "mbpp_full.jsonl")  # tasks 11, 12 (test) and 602 (train)


def _main(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


def test_missing_config_file(tmp_path):
    _one_error_line(_main("--config=configs/nope.py", f"--workdir={tmp_path / 'w'}"), "configs/nope.py",
                    "No such file")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("override,needle", [
    ("--config.checkpoint_keep=0", "config.checkpoint_keep must be an integer >= 1, got 0"),
    ("--config.train_split=trian", "config.train_split must be a split of synthetic: one of ('train', 'heldout', "
                                   "'heldout_families', 'test', 'test_families'), got 'trian'"),
    ("--config.dpo.beta=-0.5", "config.dpo.beta must be > 0, got -0.5"),
    ("--config.dpo.beta=inf", "config.dpo.beta must be finite, got inf"),
    ("--config.timeout_s=700", "config.timeout_s must be in (0, 600], got 700.0"),
    ("--config.num_iterations=two", "--config.num_iterations"),
])
def test_bad_field_is_one_line(tmp_path, override, needle):
    _one_error_line(_main("--config=configs/smoke.py", f"--workdir={tmp_path / 'w'}", override), needle)
    assert not (tmp_path / "w").exists()


def test_unknown_field_suggests_the_right_one_without_stray_quotes(tmp_path):
    line = _one_error_line(_main("--config=configs/smoke.py", f"--workdir={tmp_path / 'w'}", "--config.dpo.betta=1"),
                           "--config.dpo.betta", '(did you mean "beta"?)')
    assert line.count("'") == 0 and line.count('"') == 2


def test_workdir_that_is_a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("keep me")
    _one_error_line(_main("--config=configs/smoke.py", f"--workdir={path}"), str(path), "not a directory")
    assert path.read_text() == "keep me"


def test_workdir_with_another_config_names_the_leaf_fields(tmp_path):
    from configs import smoke

    workdir = tmp_path / "w"
    workdir.mkdir()
    previous = json.loads(smoke.get_config().to_json())
    previous["dpo"]["beta"] = 0.3
    previous["sandbox"]["workers"] = 7  # does not change results: never named, never blocks
    (workdir / "config.json").write_text(json.dumps(previous))
    line = _one_error_line(_main("--config=configs/smoke.py", f"--workdir={workdir}", "--config.num_iterations=3"))
    assert "dpo.beta (0.3 -> 0.1)" in line and "num_iterations (2 -> 3)" in line
    assert "sandbox" not in line and "'dpo'" not in line
    assert _tree(workdir) == ["config.json"] and json.loads((workdir / "config.json").read_text()) == previous


def test_fields_that_do_not_change_results_do_not_block_a_resume(tmp_path):
    from configs import smoke
    from ieta_jax.experiment import check_workdir

    c = smoke.get_config()
    (tmp_path / "config.json").write_text(c.to_json())
    c.sandbox.workers = 3
    c.debug = True
    c.checkpoint_keep = 5
    check_workdir(c, str(tmp_path))  # no StartError
    c.dpo.beta = 0.2
    with pytest.raises(ValueError, match=r"dpo\.beta \(0\.1 -> 0\.2\)"):
        check_workdir(c, str(tmp_path))


@pytest.mark.parametrize("content,problem", [("{bad", "is corrupt (Expecting property name"),
                                             ("[1]", "holds a list, not an object of config fields")])
def test_workdir_with_a_corrupt_config_json(tmp_path, content, problem):
    from configs import smoke
    from ieta_jax.experiment import StartError, check_workdir

    (tmp_path / "config.json").write_text(content)
    with pytest.raises(StartError) as e:
        check_workdir(smoke.get_config(), str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path / 'config.json'} {problem}") and "not a valid run record" in str(e.value)
    assert (tmp_path / "config.json").read_text() == content


def test_corrupt_stage_output_on_resume(tmp_path, saved_tiny_policy):
    """A truncated stage output (a disk that filled, a hand edit): one line naming it and saying to delete it, exit 2,
    before that stage or any later one runs."""
    workdir = tmp_path / "w"
    (workdir / "initial").mkdir(parents=True)
    (workdir / "initial" / "eval.json").write_text('{"pass@1": 0.5, "execution_ra')
    proc = _main("--config=configs/smoke.py", f"--workdir={workdir}", "--config.method=baseline",
                 "--config.sandbox.backend=process", f"--config.model={saved_tiny_policy}", timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {workdir / 'initial' / 'eval.json'} is corrupt (Unterminated string"), last
    assert last.endswith("; delete it to recompute that stage"), last
    assert not (workdir / "results.json").exists()


def test_failed_start_writes_no_config(tmp_path):
    workdir = tmp_path / "w"
    args = ("--config=configs/mbpp_dpo.py", f"--workdir={workdir}", f"--config.dataset={MBPP}",
            f"--config.train_dataset={MBPP}", "--config.sandbox.backend=process")
    _one_error_line(_main(*args, "--config.model=nobody/no-such-model", timeout=300),
                    "config.model='nobody/no-such-model' cannot be loaded")
    assert not (workdir / "config.json").exists()
    assert not workdir.exists() or _tree(workdir) == []


def test_corrupt_checkpoint_is_refused_before_config_json(tmp_path, saved_tiny_policy):
    """A truncated model.safetensors: one line naming the file, and nothing written, so the corrected command is not
    refused as "another config" (every tensor loads before config.json is written)."""
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(saved_tiny_policy, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    workdir = tmp_path / "w"
    _one_error_line(_main("--config=configs/smoke.py", f"--workdir={workdir}", "--config.method=baseline",
                          "--config.sandbox.backend=process", f"--config.model={corrupt}", timeout=300),
                    f"config.model={str(corrupt)!r}: model.safetensors is not a valid safetensors file (truncated")
    assert not workdir.exists() or _tree(workdir) == []


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """SIGINT while the experiment runs (here: at its first step): no KeyboardInterrupt traceback."""
    workdir = tmp_path / "w"
    script = ("import os, signal, sys, time\n"
              "import launch.main, ieta_jax.experiment as experiment\n"
              "def run_experiment(config, workdir):\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(60)\n"
              "experiment.run_experiment = run_experiment\n"
              "sys.exit(launch.main.main(sys.argv))\n")
    proc = subprocess.run([sys.executable, "-c", script, "--config=configs/smoke.py", f"--workdir={workdir}"],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr == "interrupted; rerun the same command to resume\n"


def test_tpu_pod_checks_the_remote_command_before_printing_anything():
    def pod(*args):
        return subprocess.run([sys.executable, "-m", "launch.tpu_pod", *args], cwd=REPO, env=run_env(),
                              capture_output=True, text=True, timeout=60)

    common = ("--tpu=pod", "--zone=z", "--workdir=runs/pod", "--copy", "--dry_run")
    for args, needle in [((*common, "--config=configs/nope.py"), "configs/nope.py"),
                         ((*common, "--", "--config.dpo.beta=-1"), "config.dpo.beta must be > 0"),
                         ((*common, "--", "--config.dpo.betta=1"), '(did you mean "beta"?)'),
                         (("--tpu=", "--zone=z", "--workdir=w", "--dry_run"), "--tpu must not be empty")]:
        proc = pod(*args)
        assert proc.stdout == ""
        _one_error_line(proc, needle)


def test_gpu_smoke_refuses_without_a_gpu(tmp_path):
    proc = subprocess.run(["bash", os.path.join(REPO, "launch", "gpu_smoke.sh"), str(tmp_path / "w")], cwd=REPO,
                          env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "error: JAX sees no GPU (default backend 'cpu')" in proc.stderr
    assert not (tmp_path / "w").exists()
