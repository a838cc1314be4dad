"""evaluate --policy openai://127.0.0.1:<port>/v1 against the project's own server reproduces the in-process greedy
evaluation, and a second run is answered entirely from the cache."""
import json
import os

import pytest

from ieta_jax import data, evaluate, sampling

from serve_helpers import MODEL_NAME

BACKEND = os.environ.get("IETA_DATA_TEST_BACKEND", "gvisor")
MAX_TOKENS = 24


def test_evaluate_policy_reproduces_in_process_greedy_and_caches(server, tiny_policy, tmp_path):
    from sandbox import Executor

    model, tok = tiny_policy
    tasks = data.load_tasks("synthetic", split="test", limit=4)
    out = sampling.generate(model, [tok(t.prompt)["input_ids"] for t in tasks], max_new_tokens=MAX_TOKENS,
                            temperature=0.0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    local = [{"task_id": t.task_id, "completion": data.completion_from_sample(raw, t)}
             for t, raw in zip(tasks, sampling.decode_text(tok, out))]
    with Executor(backend=BACKEND, workers=2, timeout_s=10.0) as ex:
        expected = evaluate.evaluate_samples(tasks, local, [1], ex, progress=False)

    args = ["--dataset", "synthetic", "--split", "test", "--limit", "4", "--policy", server.url.replace(
        "http://", "openai://"), "--model_name", MODEL_NAME, "--max_tokens", str(MAX_TOKENS), "--k", "1",
        "--backend", BACKEND, "--workers", "2", "--timeout_s", "10", "--no_progress",
        "--cache_dir", str(tmp_path / "cache")]
    runs = []
    for i in range(2):
        calls = server.api.engine.sampler_calls
        saved = tmp_path / f"samples{i}.jsonl"
        assert evaluate.main(args + ["--out", str(tmp_path / f"m{i}.json"), "--save_samples", str(saved)]) == 0
        runs.append((json.loads((tmp_path / f"m{i}.json").read_text()),
                     [json.loads(line) for line in saved.read_text().splitlines()],
                     server.api.engine.sampler_calls - calls))
    (first, first_samples, first_calls), (second, second_samples, second_calls) = runs
    assert [{k: s[k] for k in ("task_id", "completion")} for s in first_samples] == local
    assert first["pass_at_k"] == expected["pass_at_k"]
    assert first["execution_rate"] == pytest.approx(expected["execution_rate"])
    assert first["error_types"] == pytest.approx(expected["error_types"])
    statuses = lambda m: {t: [s["status"] for s in e["samples"]] for t, e in m["per_task"].items()}  # noqa: E731
    assert statuses(first) == statuses(expected)
    assert first["api_usage"]["requests"] == 4 and first["api_usage"]["cache_hits"] == 0 and first_calls >= 1
    assert first["api_usage"]["completion_tokens"] > 0
    # The second run pays nothing: no request reaches the server, every answer comes from the cache.
    assert second_calls == 0 and second["api_usage"]["requests"] == 0 and second["api_usage"]["cache_hits"] == 4
    assert second_samples == first_samples and second["pass_at_k"] == first["pass_at_k"]


def test_evaluate_policy_refuses_bad_flags_before_sending(server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    base = ["--dataset", "synthetic", "--split", "test", "--out", str(tmp_path / "m.json")]
    url = server.url.replace("http://", "openai://")
    calls = server.api.engine.sampler_calls
    for extra, message in ((["--policy", url], "--policy needs --model_name"),
                           (["--policy", url, "--model_name", MODEL_NAME, "--k", "1,10"], "--n 1 samples per task"),
                           (["--policy", "ftp://x", "--model_name", "m"], "policy URI 'ftp://x' must look like"),
                           (["--policy", url, "--model_name", MODEL_NAME, "--k", "1", "--chat"],
                            "--chat applies to --samples; with --policy use --api_mode chat"),
                           (["--policy", "anthropic://", "--model_name", "claude", "--k", "1"],
                            "ANTHROPIC_API_KEY is not set; export it to call https://api.anthropic.com"),
                           (["--samples", "s.jsonl", "--n", "3", "--temperature", "0.5"],
                            "--n, --temperature apply only with --policy")):
        assert evaluate.main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert evaluate.main(base + ["--policy", url, "--model_name", "nope", "--k", "1", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "404" in err[0] and "model 'nope' not found" in err[0], err
    assert server.api.engine.sampler_calls == calls and not (tmp_path / "m.json").exists()
    assert not (tmp_path / "api_cache").exists()
