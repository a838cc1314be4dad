"""The evaluate CLI: canonical HumanEval solutions score pass@1 = 1.0; bad inputs are refused clearly."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from ieta_jax import data, evaluate, evaluation, workdir
from ieta_jax.data import synthetic

REPO = pathlib.Path(__file__).resolve().parents[2]
BACKEND = os.environ.get("IETA_DATA_TEST_BACKEND", "gvisor")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_canonical_humaneval_pass_at_1_is_one(tmp_path):
    tasks = data.load_tasks("humaneval")
    samples = _write(tmp_path / "samples.jsonl",
                     [{"task_id": t.task_id, "completion": t.reference} for t in tasks])
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "ieta_jax.evaluate", "--dataset", "humaneval", "--samples", samples,
                           "--k", "1", "--out", str(out), "--backend", BACKEND, "--workers", "2", "--no_progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(out.read_text())
    assert m["pass_at_k"] == {"pass@1": 1.0}
    assert m["execution_rate"] == 1.0 and m["num_samples"] == 164 and m["num_tasks"] == 164
    assert m["error_frequencies"] == {b: 0.0 for b in evaluation.ERROR_BUCKETS} and m["error_types"] == {}
    assert len(m["per_task"]) == 164
    entry = m["per_task"]["HumanEval/0"]
    assert entry["num_samples"] == 1 and entry["num_correct"] == 1 and entry["pass@1"] == 1.0
    assert entry["samples"][0]["status"] == "passed"
    assert entry["samples"][0]["tests_passed"] == entry["samples"][0]["tests_total"] > 1   # check() split into asserts
    assert "pass@1=1.0000" in proc.stdout


def test_metrics_on_mixed_synthetic_samples(executor):
    tasks = synthetic.make_tasks("heldout", families=["mean_above", "lookup", "gaps"], tasks_per_family=1)
    sols = {t.task_id: {s.bug: s.completion for s in synthetic.solutions(t)} for t in tasks}
    mean, lookup, gaps = (t.task_id for t in tasks)
    samples = ([{"task_id": mean, "completion": sols[mean][b]} for b in (None, None, "ZeroDivisionError",
                                                                        "wrong_answer")]
               + [{"task_id": lookup, "completion": sols[lookup][b]} for b in (None, "KeyError", "KeyError",
                                                                              "wrong_answer")]
               + [{"task_id": gaps, "completion": c} for c in (sols[gaps]["IndexError"], sols[gaps]["IndexError"],
                                                               "    return [\n", "    return [\n")])
    m = evaluate.evaluate_samples(tasks, samples, [1, 2, 4], executor, progress=False)
    assert m["per_task"][mean]["num_correct"] == 2 and m["per_task"][lookup]["num_correct"] == 1
    assert m["per_task"][gaps]["num_correct"] == 0
    for k in (1, 2, 4):
        assert m["pass_at_k"][f"pass@{k}"] == pytest.approx(
            (evaluation.pass_at_k(4, 2, k) + evaluation.pass_at_k(4, 1, k) + 0) / 3)
    assert m["execution_rate"] == pytest.approx(5 / 12)          # 3 passed + 2 wrong answers
    assert m["error_frequencies"] == pytest.approx({"IndexError": 2 / 12, "TypeError": 0.0, "ValueError": 0.0,
                                                    "ZeroDivisionError": 1 / 12, "Other": 4 / 12})
    assert m["error_types"] == pytest.approx({"KeyError": 2 / 12, "AssertionError": 2 / 12, "IndexError": 2 / 12,
                                              "syntax_error": 2 / 12, "ZeroDivisionError": 1 / 12})
    assert [s["completion_id"] for s in m["per_task"][gaps]["samples"]] == [0, 1, 2, 3]
    assert m["per_task"][gaps]["samples"][2]["status"] == "syntax_error"


def test_cli_refuses_k_larger_than_samples(tmp_path, capsys):
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}] * 3
                     + [{"task_id": "HumanEval/1", "completion": "    return []\n"}] * 10)
    out = tmp_path / "m.json"
    assert evaluate.main(["--dataset", "humaneval", "--samples", samples, "--k", "1,10", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "k=10 is larger than the number of samples of 1 task(s)" in err and "HumanEval/0 with 3" in err
    assert not out.exists()


@pytest.mark.parametrize("lines,message", [
    (['{"task_id": "HumanEval/0", "completion": "x"}', '{"task_id": "Nope/1", "completion": "x"}'],
     "1 task id(s) in the samples are not in the dataset: Nope/1"),
    (['{"task_id": "HumanEval/0", "completion": "x"}', '{"task_id": "HumanEval/0"'], "s.jsonl:2: invalid JSON"),
    (['{"task_id": "HumanEval/0", "completion": 3}'], "s.jsonl:1: field 'completion' must be a string"),
])
def test_cli_refuses_bad_samples(tmp_path, capsys, lines, message):
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert evaluate.main(["--dataset", "humaneval", "--samples", str(path), "--k", "1",
                          "--out", str(tmp_path / "m.json")]) == 2
    assert message in capsys.readouterr().err


def test_parse_ks():
    assert evaluate.parse_ks("10,1,100") == [1, 10, 100]
    for bad in ("", "0", "a,b", "-1"):
        with pytest.raises(evaluate.SamplesError):
            evaluate.parse_ks(bad)


def test_chat_answers_are_extracted(executor):
    tasks = data.load_tasks("humaneval", limit=2)
    samples = [{"task_id": t.task_id, "completion": f"Here:\n```python\n{t.reference}```\nDone."} for t in tasks]
    m = evaluate.evaluate_samples(tasks, samples, [1], executor, progress=False, chat=True)
    assert m["pass_at_k"]["pass@1"] == 1.0
    m = evaluate.evaluate_samples(tasks, samples, [1], executor, progress=False)      # taken literally: prose
    assert m["pass_at_k"]["pass@1"] == 0.0 and m["error_types"] == {"syntax_error": 1.0}


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ieta_jax.evaluate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("flags,message", [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--timeout_s", "-1"], "--timeout_s must be in (0, 600], got -1"),
    (["--memory_mb", "0"], "--memory_mb must be in [32, 16384], got 0"),
])
def test_cli_refuses_bad_limits_before_the_pool_starts(tmp_path, flags, message):
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}])
    out = tmp_path / "m.json"
    out.write_text("previous metrics")
    proc = _run_cli("--dataset", "humaneval", "--samples", samples, "--k", "1", "--out", str(out), *flags)
    _one_line_error(proc, message)
    assert out.read_text() == "previous metrics"


def test_cli_refuses_an_out_directory_before_any_sample_runs(tmp_path):
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}])
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    # --workers 1 with the gVisor backend would take seconds to start; the refusal comes first, so no
    # "executing" progress and no sandbox output appear.
    proc = _run_cli("--dataset", "humaneval", "--samples", samples, "--k", "1", "--out", str(out_dir),
                    "--backend", BACKEND, "--workers", "1")
    _one_line_error(proc, f"--out {out_dir} is a directory", "metrics.json")
    assert proc.stdout == "" and list(out_dir.iterdir()) == []


def test_cli_fails_fast_on_a_hub_dataset_without_network(tmp_path):
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "mbpp/11", "completion": "x"}])
    out = tmp_path / "m.json"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))            # a port nothing listens on: connections are refused at once
    port = closed.getsockname()[1]
    closed.close()
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf_home"))   # empty cache
    proc = _run_cli("--dataset", "mbpp", "--samples", samples, "--k", "1", "--out", str(out), env=env)
    _one_line_error(proc, "hub is unreachable", "'mbpp' is not in the local cache",
                    "pass a local JSONL/JSON/parquet file")
    assert "Traceback" not in proc.stderr and not out.exists()


def test_cli_writes_metrics_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous metrics file whole and no temporary file behind."""
    out = tmp_path / "m.json"
    out.write_text('{"previous": true}')

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        workdir.write_json(str(out), {"pass_at_k": Unserializable()})
    assert out.read_text() == '{"previous": true}' and os.listdir(tmp_path) == ["m.json"]
    workdir.write_json(str(out), {"pass_at_k": {"pass@1": 0.5}})
    assert json.loads(out.read_text()) == {"pass_at_k": {"pass@1": 0.5}}


@pytest.mark.parametrize("flags, message", [
    (["--out", ""], "error: --out must not be empty"),
    (["--samples", "{tmp}"], "error: --samples {tmp} is a directory"),
    (["--dataset", "{tmp}"], "error: --dataset {tmp} is a directory"),
    (["--policy", "openai://127.0.0.1:1/v1", "--model_name", "m", "--limit", "1", "--cache_dir", "{tmp}/afile"],
     "error: --cache_dir {tmp}/afile is not a directory"),
    (["--policy", "openai://127.0.0.1:1/v1", "--model_name", "m", "--limit", "1", "--save_samples", ""],
     "error: --save_samples must not be empty"),
])
def test_cli_refuses_bad_paths_before_any_work(tmp_path, capsys, flags, message):
    """Each is refused before a sample runs or a request is sent (the endpoint here refuses connections)."""
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}])
    (tmp_path / "afile").write_text("a file")
    args = {"--dataset": "humaneval", "--samples": samples, "--k": "1", "--out": str(tmp_path / "m.json"),
            "--backend": "process"}
    flags = [f.format(tmp=tmp_path) for f in flags]
    if "--policy" in flags:
        del args["--samples"]
    for flag, value in zip(flags[::2], flags[1::2]):
        args[flag] = value
    assert evaluate.main([x for kv in args.items() for x in kv] + ["--no_progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(tmp=tmp_path)), err
    assert sorted(os.listdir(tmp_path)) == ["afile", "s.jsonl"]


def test_ctrl_c_is_one_line_and_leaves_out_as_it_was(tmp_path, capsys, monkeypatch):
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}])
    out = tmp_path / "m.json"
    out.write_text("previous metrics")

    def interrupted(*args, **kwargs):  # Ctrl-C while the samples run
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate_samples", interrupted)
    assert evaluate.main(["--dataset", "humaneval", "--samples", samples, "--k", "1", "--out", str(out),
                          "--backend", "process", "--workers", "1", "--no_progress"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"
    assert out.read_text() == "previous metrics" and sorted(os.listdir(tmp_path)) == ["m.json", "s.jsonl"]


def test_a_write_error_on_out_is_one_line_and_the_device_stays(tmp_path, capsys):
    """--out on a full device (ENOSPC) is written into, not replaced, and its error is one line."""
    import stat

    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}])
    full = tmp_path / "full"
    try:  # a /dev/full of our own where we may (as root a bug replacing it would hit the real one)
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        full = "/dev/full"
    assert evaluate.main(["--dataset", "humaneval", "--samples", samples, "--k", "1", "--out", str(full),
                          "--backend", "process", "--workers", "1", "--no_progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: --out {full}: No space left on device"
    assert stat.S_ISCHR(os.stat(full).st_mode)
