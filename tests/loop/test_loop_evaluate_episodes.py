"""`python -m ieta_jax.evaluate --model DIR --max_turns 2`: repair episodes of a saved tiny policy, the
experiment's episode metrics checked against an independent count over the episodes it reports; bad flags
refused before anything runs."""
import json
import os
import subprocess
import sys

import pytest

from ieta_jax import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_evaluate_runs_repair_episodes_of_a_saved_tiny_policy(saved_tiny_policy, tmp_path):
    out = tmp_path / "m.json"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "ieta_jax.evaluate", "--dataset", "synthetic", "--split", "heldout",
                           "--model", saved_tiny_policy, "--max_turns", "2", "--n", "2", "--k", "1,2", "--limit", "3",
                           "--temperature", "1.0", "--max_tokens", "16", "--max_prompt_len", "128",
                           "--workers", "2", "--timeout_s", "2", "--no_progress", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(out.read_text())
    turn1, turn2 = m["episodes"]
    assert len(turn1) == 6 and m["num_samples"] == 6 and m["num_tasks"] == 3
    failing = [r for r in turn1 if r["public_result"]["status"] != "passed"]
    assert failing, "the random tiny policy should fail some public tests"
    assert [(r["task_id"], r["sample"]) for r in turn2] == [(r["task_id"], r["sample"]) for r in failing]
    for r in turn2:
        assert r["turn"] == 2 and r["prompt"].endswith(r["program"][:len(r["program"]) - len(r["completion"])])
    # The metrics, counted again from the reported episodes (fix 0 continues an episode).
    final = {(r["task_id"], r["sample"]): r for r in turn1}
    final.update({(r["task_id"], r["sample"]): r for r in turn2})
    passed = lambda rows: sum(r["result"]["status"] == "passed" for r in rows) / len(rows)  # noqa: E731
    assert m["turn_1/pass@1"] == pytest.approx(passed(turn1))
    assert m["turn_2/pass@1"] == pytest.approx(passed(list(final.values()))) == m["pass@1"]
    hidden_fail = [k for k, r in ((((r["task_id"], r["sample"]), r) for r in turn1)) if r["result"]["status"] != "passed"]
    assert m["num_turn_1_failures"] == len(hidden_fail)
    if hidden_fail:
        assert m["repair_rate"] == pytest.approx(sum(final[k]["result"]["status"] == "passed" for k in hidden_fail)
                                                 / len(hidden_fail))
    ran = lambda rows: sum(r["result"]["status"] in ("passed", "failed") for r in rows) / len(rows)  # noqa: E731
    assert m["turn_1/execution_rate"] == pytest.approx(ran(turn1))
    assert m["turn_2/execution_rate"] == pytest.approx(ran(list(final.values())))
    assert set(m["turn_2/error_frequencies"]) == set(m["turn_1/error_frequencies"])
    assert "turn_1/pass@2" in m and m["config"]["max_turns"] == 2
    assert "repair rate" in proc.stdout or m["repair_rate"] is None


@pytest.mark.parametrize("flags, message", [
    (["--max_turns", "0"], "--max_turns"),
    (["--n", "1", "--k", "1,2"], "pass@2"),
    (["--max_tokens", "64", "--max_prompt_len", "128"], "max_position_embeddings=160"),
    (["--chat"], "--chat"),
])
def test_bad_model_flags_exit_2_and_write_nothing(saved_tiny_policy, tmp_path, capsys, flags, message):
    out = tmp_path / "m.json"
    args = ["--dataset", "synthetic", "--split", "heldout", "--model", saved_tiny_policy, "--out", str(out), "--k", "1",
            *flags]
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_max_turns_needs_a_model(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n')
    assert evaluate.main(["--dataset", "humaneval", "--samples", str(samples), "--k", "1", "--max_turns", "2",
                          "--out", str(tmp_path / "m.json")]) == 2
    assert "only with --model" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def _spoil(name: str, d) -> None:
    """One way a policy directory can be broken (what a user's mistake or a half-copied directory leaves)."""
    if name == "config_list":
        (d / "config.json").write_text("[1, 2]")
    elif name == "config_bad_json":
        (d / "config.json").write_text("{bad")
    elif name == "positions_str":
        hf = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**hf, "max_position_embeddings": "abc"}))
    elif name == "no_weights":
        (d / "model.safetensors").unlink()
    elif name == "truncated_weights":
        (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000])
    elif name == "no_tokenizer":
        for f in d.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
                f.unlink()


BAD_POLICY_DIRS = [
    ("config_list", "config.json must be a JSON object, got list"),
    ("config_bad_json", "config.json is not valid JSON: Expecting property name"),
    ("positions_str", "config.json: max_position_embeddings must be a positive integer, got 'abc'"),
    ("no_weights", "no model.safetensors or model.safetensors.index.json"),
    ("truncated_weights", "model.safetensors is not a valid safetensors file"),
    ("no_tokenizer", "no tokenizer files"),
]


@pytest.mark.parametrize("spoil, message", BAD_POLICY_DIRS)
def test_a_bad_policy_directory_is_named_in_one_line(saved_tiny_policy, tmp_path, capsys, spoil, message):
    import shutil

    policy = tmp_path / "policy"
    shutil.copytree(saved_tiny_policy, policy)
    _spoil(spoil, policy)
    out = tmp_path / "m.json"
    assert evaluate.main(["--dataset", "synthetic", "--split", "heldout", "--model", str(policy), "--k", "1",
                          "--limit", "1", "--backend", "process", "--no_progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --model {policy}: ") and err[0].count(message) == 1, err
    assert not out.exists()
