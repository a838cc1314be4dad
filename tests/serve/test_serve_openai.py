"""The OpenAI server over a tiny checkpoint, queried with the official `openai` client."""
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import jax
import numpy as np
import openai
import pytest

from ieta_jax import sampling
from ieta_jax.data import synthetic

from serve_helpers import MODEL_NAME

REPO = pathlib.Path(__file__).resolve().parents[2]
PROMPTS = [t.prompt for t in synthetic.make_tasks("heldout", seed=0)[:3]]


def _client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)


def _greedy(tiny_policy, prompt_ids, max_tokens):
    model, tok = tiny_policy
    out = sampling.generate(model, [prompt_ids], max_new_tokens=max_tokens, temperature=0.0,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return sampling.decode_text(tok, out)[0], out


def test_greedy_completion_equals_the_in_process_sampler(server, tiny_policy):
    _, tok = tiny_policy
    ids = tok(PROMPTS[0])["input_ids"]
    expected, out = _greedy(tiny_policy, ids, 20)
    r = _client(server).completions.create(model=MODEL_NAME, prompt=PROMPTS[0], max_tokens=20, temperature=0,
                                           logprobs=1)
    [choice] = r.choices
    assert choice.text == expected and expected
    n = int(out.lengths[0])
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == n
    assert choice.finish_reason == ("stop" if n < 20 else "length")
    np.testing.assert_allclose(choice.logprobs.token_logprobs, out.logprobs[0, :n], rtol=1e-5, atol=1e-5)
    assert "".join(choice.logprobs.tokens) == expected
    assert choice.logprobs.text_offset[0] == 0
    by_ids = _client(server).completions.create(model=MODEL_NAME, prompt=ids, max_tokens=20, temperature=0)
    assert by_ids.choices[0].text == expected       # a prompt given as token ids


def test_chat_uses_the_tokenizer_template(server, tiny_policy):
    _, tok = tiny_policy
    messages = [{"role": "system", "content": "Write Python."}, {"role": "user", "content": PROMPTS[1]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|assistant|>\n")
    expected, _ = _greedy(tiny_policy, tok(text)["input_ids"], 12)
    r = _client(server).chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                                temperature=0, logprobs=True)
    assert r.choices[0].message.content == expected and r.choices[0].message.role == "assistant"
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == expected and all(t.logprob <= 0 for t in content)


def test_stop_sequences_cut_the_text(server, tiny_policy):
    _, tok = tiny_policy
    full, _ = _greedy(tiny_policy, tok(PROMPTS[0])["input_ids"], 20)
    stop = full[6:9]
    r = _client(server).completions.create(model=MODEL_NAME, prompt=PROMPTS[0], max_tokens=20, temperature=0,
                                           stop=[stop, "\x00never"])
    assert r.choices[0].text == full[:full.find(stop)] and r.choices[0].finish_reason == "stop"


def test_n_samples_per_prompt_and_seeds(server):
    client = _client(server)
    kw = dict(model=MODEL_NAME, prompt=PROMPTS[:2], max_tokens=8, temperature=1.0, top_p=0.9, n=3, seed=7,
              logprobs=1)
    r = client.completions.create(**kw)
    assert [c.index for c in r.choices] == list(range(6))
    texts = [c.text for c in r.choices]
    assert len(set(texts[:3])) > 1            # three different samples of the first prompt
    assert [c.text for c in client.completions.create(**kw).choices] == texts   # a seed reproduces them
    assert r.usage.completion_tokens == sum(len(c.logprobs.tokens) + (c.finish_reason == "stop") for c in r.choices)


def test_streaming_gives_the_same_text(server, tiny_policy):
    client = _client(server)
    plain = client.completions.create(model=MODEL_NAME, prompt=PROMPTS[2], max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPTS[2], max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert len(chunks) > 3
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    messages = [{"role": "user", "content": PROMPTS[2]}]
    chat = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0,
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == chat.choices[0].message.content
    # a stop string is honoured across chunks: nothing at or past it is ever sent
    _, tok = tiny_policy
    full, _ = _greedy(tiny_policy, tok(PROMPTS[0])["input_ids"], 20)
    stop = full[9:13]
    streamed = [c.choices[0] for c in client.completions.create(
        model=MODEL_NAME, prompt=PROMPTS[0], max_tokens=20, temperature=0, stop=[stop], stream=True)]
    assert "".join(c.text for c in streamed) == full[:full.find(stop)] and streamed[-1].finish_reason == "stop"


def test_stream_events_leave_while_later_tokens_decode(server):
    """The engine pauses after its first streamed chunk until the client has read a token: a stream sent only
    after decoding would leave the engine waiting out the timeout instead."""
    engine, client = server.api.engine, _client(server)
    plain = client.completions.create(model=MODEL_NAME, prompt=PROMPTS[1], max_tokens=32, temperature=0)
    assert plain.usage.completion_tokens > 2          # more than the first chunk's one token to wait for
    steps, waited, first_read = [], [], threading.Event()

    def hook(decoded):
        steps.append(decoded)
        if len(steps) == 1:
            waited.append(first_read.wait(timeout=120))
    engine.chunk_hook = hook
    try:
        chunks, seen_at_first = [], None
        for chunk in client.completions.create(model=MODEL_NAME, prompt=PROMPTS[1], max_tokens=32, temperature=0,
                                               stream=True):
            if seen_at_first is None:
                seen_at_first = list(steps)
                first_read.set()
            chunks.append(chunk)
    finally:
        engine.chunk_hook = None
    assert waited == [True] and seen_at_first == [1]  # the client read token 0 while 1 of the tokens existed
    assert steps[-1] >= plain.usage.completion_tokens and len(steps) > 1
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text


def test_a_request_arriving_during_a_stream_runs_next(server, tiny_policy):
    """Scheduling is first come, first served: a stream's batch runs to its end, then the queued request."""
    engine, (_, tok) = server.api.engine, tiny_policy
    ids = tok(PROMPTS[0])["input_ids"]
    steps, release = [], threading.Event()

    def hook(decoded):
        steps.append(decoded)
        if len(steps) == 1:
            release.wait(timeout=120)
    engine.chunk_hook = hook
    try:
        calls = engine.sampler_calls
        stream = engine.stream([ids], temperature=0, max_tokens=20)
        assert not next(stream)[0].done              # the stream's batch is decoding (held after its first chunk)
        plain = engine.submit([ids], temperature=0, max_tokens=20)
        assert engine.pending_rows() == 1 and not plain.done()   # queued, not merged into the running batch
        release.set()
        streamed = list(stream)[-1][0]
        assert plain.result(timeout=300)[0].tokens == streamed.tokens
        assert engine.sampler_calls == calls + 2
    finally:
        engine.chunk_hook = None
        release.set()


def test_streaming_n_samples_carry_their_index(server):
    client = _client(server)
    kw = dict(model=MODEL_NAME, prompt=PROMPTS[:2], max_tokens=12, temperature=1.0, n=2, seed=11)
    plain = client.completions.create(**kw)
    texts, finish = [""] * 4, [None] * 4
    for chunk in client.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        for c in chunk.choices:
            texts[c.index] += c.text
            finish[c.index] = c.finish_reason or finish[c.index]
    assert texts == [c.text for c in plain.choices]           # same seed: the same samples, streamed or not
    assert finish == [c.finish_reason for c in plain.choices]
    assert chunk.usage.completion_tokens == plain.usage.completion_tokens
    chat = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": PROMPTS[0]}],
                                          max_tokens=6, temperature=0.8, n=3, seed=2, stream=True)
    by_index = {}
    for chunk in chat:
        for c in chunk.choices:
            by_index.setdefault(c.index, []).append(c)
    assert sorted(by_index) == [0, 1, 2] and all(cs[0].delta.role == "assistant" for cs in by_index.values())


def _reference_logprobs(tiny_policy, prompt_ids, completion_ids):
    model, _ = tiny_policy
    ids = np.asarray([list(prompt_ids) + list(completion_ids)])
    logits = model(ids, np.ones_like(ids, bool))
    return np.asarray(jax.nn.log_softmax(logits.astype(jax.numpy.float32), -1))[0, len(prompt_ids) - 1:-1]


def test_top_logprobs_are_the_models(server, tiny_policy):
    _, tok = tiny_policy
    client = _client(server)
    ids = tok(PROMPTS[0])["input_ids"]
    _, out = _greedy(tiny_policy, ids, 8)
    n = int(out.lengths[0])
    tokens = out.tokens[0, :n]
    ref = _reference_logprobs(tiny_policy, ids, tokens)
    best = np.argsort(-ref, -1, kind="stable")
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPTS[0], max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    shown = len(lp.tokens)                            # the EOS token, if any, is not part of the text
    for t in range(shown):
        expected = {tok.decode([int(i)], skip_special_tokens=False): ref[t, i] for i in best[t, :3]}
        assert lp.top_logprobs[t].keys() == expected.keys()
        np.testing.assert_allclose([lp.top_logprobs[t][k] for k in expected], list(expected.values()), atol=2e-5)
        np.testing.assert_allclose(lp.token_logprobs[t], ref[t, tokens[t]], atol=2e-5)
    messages = [{"role": "user", "content": PROMPTS[1]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(text)["input_ids"]
    _, out = _greedy(tiny_policy, chat_ids, 6)
    ref = _reference_logprobs(tiny_policy, chat_ids, out.tokens[0, :int(out.lengths[0])])
    for stream in (False, True):
        r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=6, temperature=0,
                                           logprobs=True, top_logprobs=2, stream=stream)
        content = ([e for c in r for e in (c.choices[0].logprobs.content if c.choices[0].logprobs else [])]
                   if stream else r.choices[0].logprobs.content)
        assert content
        for t, entry in enumerate(content):
            top = np.argsort(-ref[t], kind="stable")[:2]
            assert [a.token for a in entry.top_logprobs] == [tok.decode([int(i)], skip_special_tokens=False)
                                                            for i in top]
            np.testing.assert_allclose([a.logprob for a in entry.top_logprobs], ref[t, top], atol=2e-5)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=2, top_logprobs=2)
    assert e.value.body["param"] == "top_logprobs"


def test_concurrent_requests_share_one_sampler_call(server, tiny_policy):
    engine = server.api.engine
    client = _client(server)
    solo = [client.completions.create(model=MODEL_NAME, prompt=PROMPTS[i % 2], max_tokens=10 - i, temperature=0)
            for i in range(4)]
    calls = engine.sampler_calls
    results = [None] * 4
    with engine.paused():
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, client.completions.create(
            model=MODEL_NAME, prompt=PROMPTS[i % 2], max_tokens=10 - i, temperature=0, seed=i,
            top_p=1.0 - 0.1 * i))) for i in range(4)]   # greedy: seed and top_p do not split the batch
        for t in threads:
            t.start()
        while engine.pending_rows() < 4:     # every request is queued before the engine may take a batch
            time.sleep(0.01)
    for t in threads:
        t.join(timeout=300)
    assert engine.sampler_calls == calls + 1 and engine.batch_rows[-1] == 4
    assert [r.choices[0].text for r in results] == [r.choices[0].text for r in solo]
    assert [r.usage.completion_tokens for r in results] == [r.usage.completion_tokens for r in solo]


def test_bad_requests_get_openai_errors(server):
    client = _client(server)
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-nope", prompt="x", max_tokens=1)
    assert "gpt-nope" in str(e.value) and e.value.body["code"] == "model_not_found"
    for kw, param in ((dict(temperature=5), "temperature"), (dict(n=0), "n"), (dict(logprobs=6), "logprobs"),
                      (dict(max_tokens=2_000), "max_tokens"), (dict(presence_penalty=1.0), "presence_penalty")):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=MODEL_NAME, **{"prompt": "def f():", "max_tokens": 2, **kw})
        assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error", kw
    req = urllib.request.Request(server.url + "/completions", data=b"{not json", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 400 and set(json.loads(e.value.read())["error"]) == {"message", "type", "param", "code"}
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]


def test_cli_serves_a_checkpoint_dir(tiny_checkpoint, tiny_policy, tmp_path):
    bad = subprocess.run([sys.executable, "-m", "ieta_jax.serve", "--model", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --model {tmp_path} is not a checkpoint directory (no config.json)"]
    proc = subprocess.Popen([sys.executable, "-m", "ieta_jax.serve", "--model", tiny_checkpoint, "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "XLA_FLAGS": ""})
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {MODEL_NAME} at http://127.0.0.1:"), line
        client = openai.OpenAI(base_url=line.split(" at ")[1].strip(), api_key="unused", max_retries=0, timeout=300)
        _, tok = tiny_policy
        expected, _ = _greedy(tiny_policy, tok(PROMPTS[0])["input_ids"], 8)
        r = client.completions.create(model=MODEL_NAME, prompt=PROMPTS[0], max_tokens=8, temperature=0)
        assert r.choices[0].text == expected
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("flags, message", [
    (["--spoil", "config.json", "[1, 2]"], "error: --model {ckpt}: config.json must be a JSON object, got list"),
    (["--spoil", "model.safetensors", "x" * 20], "error: --model {ckpt}: model.safetensors is not a valid safetensors "
                                                  "file"),
    (["--spoil", "tokenizer.json", None], "error: --model {ckpt}: no tokenizer files"),
    (["--host", "999.1.1.1"], "error: --host 999.1.1.1: "),
])
def test_cli_names_a_bad_checkpoint_or_host_in_one_line(tiny_checkpoint, tmp_path, capsys, flags, message):
    import shutil

    from ieta_jax import serve

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    if flags[0] == "--spoil":
        _, name, content = flags
        (ckpt / name).unlink()
        if content is not None:
            (ckpt / name).write_text(content)
        flags = []
    assert serve.main(["--model", str(ckpt), "--port", "0", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(ckpt=ckpt)), err


def test_cli_refuses_an_unknown_dtype_and_ctrl_c_while_loading_is_one_line(tiny_checkpoint, capsys, monkeypatch):
    from ieta_jax import serve

    with pytest.raises(SystemExit) as e:
        serve.main(["--model", tiny_checkpoint, "--dtype", "float17"])
    assert e.value.code == 2 and "--dtype: invalid choice: 'float17'" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "load", interrupted)
    assert serve.main(["--model", tiny_checkpoint, "--port", "0"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted"]


def test_warmup_compiles_what_common_requests_use(tiny_policy):
    from ieta_jax import serve

    model, tok = tiny_policy
    engine = serve.Engine(model, tok, max_batch_rows=2)
    try:
        assert engine.warmup(prompt_tokens=16) == 4      # batch sizes 1 and 2, logprobs, streaming
        programs = [f._cache_size() for f in (sampling._generate, sampling._prefill, sampling._decode_chunk)]
        ids = tok(PROMPTS[0])["input_ids"][:12]
        assert len(engine.submit([ids], n=2, temperature=0, max_tokens=10).result()) == 2
        assert engine.submit([ids], temperature=0, max_tokens=16, top_logprobs=2).result()[0].top
        assert list(engine.stream([ids], temperature=0.7, max_tokens=5))[-1][0].done
        assert [f._cache_size() for f in (sampling._generate, sampling._prefill, sampling._decode_chunk)] == programs
        assert engine.sampler_calls == 3
    finally:
        engine.close()


@pytest.mark.parametrize("length, status", [("-1", 400), ("abc", 400), (str(64 << 20), 413)])
def test_bad_content_length_is_refused_at_once(server, length, status):
    # Content-Length: -1 made the handler read until a close that never came (the connection hung)
    import socket
    from urllib.parse import urlparse
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        head = s.recv(4096).decode(errors="replace")
    assert head.startswith(f"HTTP/1.0 {status}") or head.startswith(f"HTTP/1.1 {status}"), head[:200]


def test_body_nested_past_the_parser_is_a_400(server):
    req = urllib.request.Request(server.url + "/completions", data=b"[" * 100_000, method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 400
