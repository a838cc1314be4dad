"""The experiment with API models (issue 13): a hosted policy is the project's own server (ieta_jax.serve) over the
run's tiny checkpoint, so its baseline must equal the in-process one; responses are cached in the workdir; the AI
judge of RLAIF end to end against a server (a random tiny model is a poor judge: this tests the mechanics);
start-up refusals are one line, exit 2, nothing written."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO, main_cmd, run_env

# Prompts fit whole (a local policy left-truncates them to max_prompt_len tokens, a server does not).
LONG_PROMPTS = ("--config.max_prompt_len=128", "--config.tiny.max_position_embeddings=176")
GREEDY_BASELINE = ("--config.method=baseline", "--config.eval_temperature=0.0", *LONG_PROMPTS)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def _run(workdir, *overrides, expect=0):
    proc = subprocess.run(main_cmd(workdir, *overrides), cwd=REPO, env=run_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _read(workdir, *parts):
    with open(os.path.join(workdir, *parts)) as f:
        return json.load(f)


def _jsonl(workdir, *parts):
    with open(os.path.join(workdir, *parts)) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def local_baseline(tmp_path_factory):
    """A greedy baseline of the in-process tiny model (its workdir holds the warm-started checkpoint)."""
    workdir = str(tmp_path_factory.mktemp("api") / "local")
    _run(workdir, *GREEDY_BASELINE)
    return workdir


def _serve(model_dir, name):
    from ieta_jax import models, serve

    model, tok = models.from_pretrained(model_dir), models.load_tokenizer(model_dir)
    return serve.Server(serve.API(serve.Engine(model, tok, max_batch_rows=64), name), port=0)


def _uri(server):
    return server.url.replace("http://", "openai://")


def test_api_policy_reproduces_the_local_baseline_and_then_answers_from_the_cache(local_baseline, tmp_path):
    with _serve(os.path.join(local_baseline, "tiny_model"), "tiny") as server:
        api_run = str(tmp_path / "api")
        _run(api_run, *GREEDY_BASELINE, f"--config.policy={_uri(server)}", "--config.policy_model_name=tiny")
    local, remote = _read(local_baseline, "results.json"), _read(api_run, "results.json")
    assert not os.path.exists(os.path.join(api_run, "tiny_model"))          # no warm start for a hosted policy
    # The same greedy programs, task by task, hence the same verdicts and pass@k.
    by_key = {(r["task_id"], r["sample"]): r for r in _jsonl(local_baseline, "initial", "eval_samples.jsonl")}
    rows = _jsonl(api_run, "initial", "eval_samples.jsonl")
    assert len(rows) == len(by_key) == 12 * 4
    for r in rows:
        assert r["completion"] == by_key[r["task_id"], r["sample"]]["completion"], r["task_id"]
        assert r["result"]["status"] == by_key[r["task_id"], r["sample"]]["result"]["status"]
    assert remote["methods"]["baseline"]["final"] == local["methods"]["baseline"]["final"]
    # One request (n samples) per held-out task: the 12 of the eval split and the 12 of the held-out families.
    families = _jsonl(api_run, "initial", "test_families", "eval_samples.jsonl")
    assert len({r["task_id"] for r in families}) == 12
    usage = remote["meta"]["api_usage"]["policy"]
    assert (usage["requests"], usage["cache_hits"]) == (24, 0) and usage["completion_tokens"] > 0
    assert "API usage" in open(os.path.join(api_run, "report.md")).read()

    # A new workdir holding the first one's response cache, the server gone: every answer comes from the cache.
    again = str(tmp_path / "again")
    shutil.copytree(os.path.join(api_run, "api_cache"), os.path.join(again, "api_cache"))
    _run(again, *GREEDY_BASELINE, f"--config.policy={_uri(server)}", "--config.policy_model_name=tiny")
    usage = _read(again, "results.json")["meta"]["api_usage"]["policy"]
    assert (usage["requests"], usage["cache_hits"]) == (0, 24)
    def view(rs):
        return [(r["task_id"], r["sample"], r["completion"], r["result"]["status"]) for r in rs]

    assert view(_jsonl(again, "initial", "eval_samples.jsonl")) == view(rows)


@pytest.fixture(scope="module")
def judge_checkpoint(tmp_path_factory):
    """A random tiny Llama with a chat template and a context long enough for judge prompts."""
    from flax import nnx

    from ieta_jax import models
    from ieta_jax.data import synthetic
    from ieta_jax.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("judge_ckpt")
    tok = train_tokenizer([t.prompt for t in synthetic.make_tasks("train", seed=0)], str(root / "tok"),
                          vocab_size=320)
    tok.chat_template = CHAT_TEMPLATE
    cfg = models.ModelConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                             tie_word_embeddings=True, model_type="llama", eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    path = str(root / "judge")
    models.save_pretrained(models.CausalLM(cfg, rngs=nnx.Rngs(0)), path, tokenizer=tok)
    return path


def test_rlaif_with_judge_feedback_end_to_end(local_baseline, judge_checkpoint, tmp_path):
    from ieta_jax.api import judge as judge_lib

    workdir = str(tmp_path / "judged")
    shutil.copytree(os.path.join(local_baseline, "tiny_model"), os.path.join(workdir, "tiny_model"))  # no warm start
    with _serve(judge_checkpoint, "judge") as server:
        _run(workdir, *LONG_PROMPTS, "--config.method=rlaif", "--config.num_iterations=1", "--config.num_train_tasks=4",
             "--config.num_eval_tasks=2", "--config.train_steps=1", "--config.rlaif.reward_steps=1",
             "--config.rlaif.prompts_per_step=1", "--config.batch_size=4", "--config.trace=false",
             "--config.rlaif.feedback=both", f"--config.rlaif.judge={_uri(server)}", "--config.rlaif.judge_model=judge")
    rows = _jsonl(workdir, "rlaif", "iter_1", "judgements.jsonl")
    assert rows, "the train samples gave no distinct programs to compare"
    for j in rows:
        assert isinstance(j["raw"], str)                                     # audit: the judge saw every pair
        parsed = judge_lib.parse_verdict(j["raw"])[0]
        assert j["judge_label"] == parsed
        if j["execution_label"] == "tie":                                    # the judge breaks execution's ties
            assert (j["source"], j["label"]) == ("judge", parsed)
        else:                                                                # execution decides what it can
            assert (j["source"], j["label"]) == ("execution", j["execution_label"])
            assert j["agrees"] == (None if parsed not in ("A", "B") else parsed == j["execution_label"])
    sources = {(j["execution_label"] == "tie", j["source"]) for j in rows}
    assert sources == {(True, "judge"), (False, "execution")}, sources   # both kinds occurred (fixed seeds)
    decided = [j for j in rows if j["label"] in ("A", "B")]
    pairs = _jsonl(workdir, "rlaif", "iter_1", "pairs.jsonl")
    assert len(pairs) <= len(decided) and all(p["reason"].split(":")[0] in ("execution", "judge") for p in pairs)

    results = _read(workdir, "results.json")
    summary = results["methods"]["rlaif"]["iterations"][1]["judge"]
    fields = {f for f in judge_lib.Judgement.__dataclass_fields__}
    assert summary == judge_lib.summarize([judge_lib.Judgement(**{k: v for k, v in j.items() if k in fields})
                                           for j in rows])
    assert summary["judge_asked"] == len(rows)
    assert results["meta"]["api_usage"]["judge"]["requests"] == len(rows)  # one request per pair, none cached yet
    assert "## AI judge" in open(os.path.join(workdir, "report.md")).read()


@pytest.mark.parametrize("overrides,words", [
    (("--config.policy=http://127.0.0.1:1/v1", "--config.policy_model_name=m", "--config.method=baseline"),
     "config.policy"),
    (("--config.policy=openai://127.0.0.1:1/v1", "--config.method=baseline"), "config.policy_model_name"),
    (("--config.policy=openai://127.0.0.1:1/v1", "--config.policy_model_name=m", "--config.method=dpo"),
     "must be 'baseline'"),
    (("--config.method=rlaif", "--config.rlaif.feedback=judge"), "config.rlaif.judge"),
    (("--config.policy=openai://api.example.invalid/v1", "--config.policy_model_name=m", "--config.method=baseline"),
     "OPENAI_API_KEY is not set"),
])
def test_start_up_refusals_are_one_line_and_write_nothing(tmp_path, overrides, words, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)       # run_env() copies os.environ
    workdir = str(tmp_path / "wd")
    proc = _run(workdir, *overrides, expect=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr
    assert not os.path.exists(workdir)


def test_an_endpoint_that_refuses_the_model_is_one_error_line(judge_checkpoint, tmp_path):
    with _serve(judge_checkpoint, "judge") as server:
        proc = _run(str(tmp_path / "wd"), *GREEDY_BASELINE, f"--config.policy={_uri(server)}",
                    "--config.policy_model_name=nope", expect=2)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 404 from ") and "model 'nope' not found" in last, proc.stderr[-2000:]
