"""The API client's retries, backoff and failures against scripted local servers, and Anthropic's Messages API
through the official client against a local stand-in."""
import pytest

from ieta_jax import api

from stub_server import StubServer, completion_body, error_body, scripted


def _client(port, tmp_path=None, **kw):
    ep = api.parse_endpoint(f"openai://127.0.0.1:{port}/v1", "m")
    sleeps = []
    client = api.APIClient(ep, cache_dir=str(tmp_path / "cache") if tmp_path else None, sleep=sleeps.append,
                           initial_backoff_s=0.5, **kw)
    return client, sleeps


REQUEST = {"model": "m", "prompt": "def f():", "max_tokens": 2}


def test_429_and_5xx_are_retried_with_exponential_backoff(tmp_path):
    with StubServer(scripted((429, error_body(429, "slow down"), {}), (503, error_body(503, "busy"), {}),
                             (429, error_body(429, "slow down"), {"Retry-After": "7"}),
                             (200, completion_body("done"), {}))) as stub:
        client, sleeps = _client(stub.port, tmp_path)
        out = client.call("completions", REQUEST)
    assert out["choices"][0]["text"] == "done" and len(stub.requests) == 4
    assert sleeps == [0.5, 1.0, 7.0]             # 0.5 * 2**k, raised to the server's Retry-After
    assert client.usage.retries == 3 and client.usage.requests == 1
    assert client.usage.prompt_tokens == 3 and client.usage.completion_tokens == 2


def test_retries_stop_after_max_retries(tmp_path):
    with StubServer(scripted((500, error_body(500, "broken"), {}))) as stub:
        client, sleeps = _client(stub.port, max_retries=2)
        with pytest.raises(api.APIError, match="500 from http://127.0.0.1"):
            client.call("completions", REQUEST)
    assert len(stub.requests) == 3 and sleeps == [0.5, 1.0]


def test_timeouts_are_retried(tmp_path):
    import time

    calls = []

    def respond(path, body, headers):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(3)                       # longer than the client's timeout: the first attempt times out
        return 200, completion_body("late"), {}

    with StubServer(respond) as stub:
        client, sleeps = _client(stub.port, timeout_s=1.0)
        assert client.call("completions", REQUEST)["choices"][0]["text"] == "late"
    assert len(calls) == 2 and sleeps == [0.5]


@pytest.mark.parametrize("status,fragment", [(401, "check OPENAI_API_KEY"), (403, "check OPENAI_API_KEY"),
                                             (404, "model 'm' not found"), (400, "400 from")])
def test_client_errors_fail_at_once_with_one_line(status, fragment):
    with StubServer(scripted((status, error_body(status, "nope"), {}))) as stub:
        client, sleeps = _client(stub.port)
        with pytest.raises(api.APIError) as e:
            client.call("completions", REQUEST)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert len(stub.requests) == 1 and sleeps == []


def test_remote_endpoint_without_key_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(api.APIError, match="OPENAI_API_KEY is not set"):
        api.APIClient(api.parse_endpoint("openai://api.example.com/v1", "m"))


def test_responses_are_cached_by_request(tmp_path):
    with StubServer(lambda path, body, headers: (200, completion_body(body["prompt"][::-1]), {})) as stub:
        client, _ = _client(stub.port, tmp_path, max_concurrency=4)
        reqs = [{**REQUEST, "prompt": f"p{i}"} for i in range(6)]
        first = client.map("completions", reqs)
        again, _ = _client(stub.port, tmp_path)
        second = again.map("completions", reqs + [{**REQUEST, "prompt": "new"}])
    assert [o["choices"][0]["text"] for o in first] == [f"{i}p" for i in range(6)]
    assert second[:6] == first and len(stub.requests) == 7
    assert (again.usage.requests, again.usage.cache_hits, again.usage.cached_prompt_tokens) == (1, 6, 18)


def _messages_reply(path, body, headers):
    text = body["messages"][0]["content"]
    return 200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                 "content": [{"type": "text", "text": f"Sure:\n```python\n# {text} {body['metadata']['user_id']}\n```"}],
                 "stop_reason": "end_turn", "stop_sequence": None,
                 "usage": {"input_tokens": 11, "output_tokens": 7}}, {}


def test_cache_key_is_the_host_and_request_not_the_api_key(tmp_path, monkeypatch):
    """Another host may serve another model under the same name, so it is asked again; the same host under
    another key (or written with a trailing '/') is answered from the cache."""
    reply = lambda path, body, headers: (200, completion_body("x"), {})  # noqa: E731
    with StubServer(reply) as first, StubServer(reply) as second:
        for key, uri in (("k1", f"openai://127.0.0.1:{first.port}/v1"), ("k2", f"openai://127.0.0.1:{first.port}/v1/"),
                         ("k1", f"openai://127.0.0.1:{second.port}/v1")):
            monkeypatch.setenv("OPENAI_API_KEY", key)
            client = api.APIClient(api.parse_endpoint(uri, "m"), cache_dir=str(tmp_path))
            client.call("completions", REQUEST)
        assert len(first.requests) == 1 and len(second.requests) == 1
        assert (client.usage.requests, client.usage.cache_hits) == (1, 0)


def test_anthropic_policy_through_the_official_client(tmp_path, monkeypatch):
    from ieta_jax import data

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    tasks = data.load_tasks("synthetic", split="test", limit=2)
    with StubServer(_messages_reply) as stub:
        policy = api.APIPolicy(f"anthropic://127.0.0.1:{stub.port}", "claude-test", cache_dir=str(tmp_path))
        prompts = [policy.prompt_for(t) for t in tasks]
        out = policy.generate(prompts, n=2, temperature=0.5, top_p=1.0, max_new_tokens=64, seed=3)
        assert len(stub.requests) == 4
        again = policy.generate(prompts, n=2, temperature=0.5, top_p=1.0, max_new_tokens=64, seed=3)
        assert len(stub.requests) == 4 and again == out          # the second call is answered from the cache
    path, headers, body = next(r for r in stub.requests if r[2]["messages"][0]["content"] == prompts[0])
    assert path == "/v1/messages" and "anthropic-version" in headers
    assert "sk-test" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert body["model"] == "claude-test" and body["max_tokens"] == 64 and body["temperature"] == 0.5
    assert body["messages"] == [{"role": "user", "content": prompts[0]}] and "```python" in prompts[0]
    assert tasks[0].prompt.rstrip() in prompts[0]
    for i in range(2):                # answers come back in prompt order, sample j as sample j
        for j in range(2):
            assert out[i][j].endswith(f"{prompts[i]} ieta-sample-3-{j}\n```")
    assert policy.completion_for(out[0][0], tasks[0]).startswith("\n# Complete the following")
    assert (policy.usage.requests, policy.usage.prompt_tokens, policy.usage.completion_tokens) == (4, 44, 28)
    assert policy.usage.cache_hits == 4


def test_concurrency_is_bounded():
    import threading
    import time

    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def respond(path, body, headers):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return 200, completion_body(body["prompt"]), {}

    with StubServer(respond) as stub:
        client, _ = _client(stub.port, max_concurrency=2)
        out = client.map("completions", [{**REQUEST, "prompt": f"p{i}"} for i in range(8)])
    assert [o["choices"][0]["text"] for o in out] == [f"p{i}" for i in range(8)]   # in request order
    assert len(stub.requests) == 8 and 1 <= state["peak"] <= 2
