"""An OpenAI-compatible server over a local checkpoint, on the project's sampler.

    python -m ieta_jax.serve --model runs/smoke/dpo/iter_2/policy [--port 8000] [--host 127.0.0.1]

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (the tokenizer's chat template).
Request fields: model, prompt (a string, a list of strings or of token ids) or messages, n, temperature, top_p,
max_tokens (max_completion_tokens), stop, seed, logprobs (the sampled token's log-probability: `logprobs` 0/1 for
completions, `logprobs: true` with top_logprobs 0 for chat), stream (+ stream_options.include_usage). Fields that
change the distribution in ways this sampler does not implement (echo, best_of > n, presence/frequency penalties,
logit_bias) are refused with a 400 rather than ignored.

Every request waits in one queue; the engine thread takes everything queued, groups it by sampling settings
(temperature and top_p; all greedy requests form one group; a request with a seed samples alone, so its samples
depend only on the request) and runs each group as one `sampling.generate` call, so concurrent clients share a
batch. Batch rows and generation length are rounded up (powers of two, multiples of 16) so a handful of compiled
programs serve all requests. The sampler decodes in one compiled loop, so a streamed response is the SSE form of
the finished generation: its chunks arrive when the batch ends, token by token.
Log-probabilities are those of the untempered, untruncated model (as `sampling.GenerateOutput` defines them).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import http.server
import itertools
import json
import os
import queue
import sys
import threading
import time
import uuid
from typing import Iterator, Sequence

MAX_N = 128
LENGTH_BUCKET = 16


class RequestError(ValueError):
    """A request that cannot be served; becomes an OpenAI-shaped error response."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 type: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.type, self.code = param, status, type, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


@dataclasses.dataclass
class Sampled:
    """One generated row: token ids (EOS excluded), their log-probabilities, and whether EOS ended it."""

    tokens: list[int]
    logprobs: list[float]
    eos: bool


@dataclasses.dataclass
class _Job:
    prompts: list[list[int]]          # one row per sample (a prompt repeated n times)
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    future: concurrent.futures.Future


def _bucket_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Engine:
    """Batches concurrent requests into `sampling.generate` calls on one model (one thread runs the sampler)."""

    def __init__(self, model, tokenizer, *, max_batch_rows: int = 64, seed: int = 0):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_rows = max_batch_rows
        self.max_positions = model.config.max_position_embeddings
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
        self.eos_ids = tuple(int(e) for e in ([eos] if isinstance(eos, int) else (eos or ())))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._gate = threading.Lock()         # held by `paused()`: the engine takes no batch meanwhile
        self._rng = itertools.count(seed * 1_000_003)
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self.sampler_calls = 0
        self.batch_rows: list[int] = []       # rows of each sampler call (before padding)
        self._thread = threading.Thread(target=self._loop, name="serve-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- client side
    def submit(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_tokens: int = 16, seed: int | None = None) -> concurrent.futures.Future:
        """Future of `len(prompts) * n` Sampled rows (row i*n + j is sample j of prompt i)."""
        longest = max(len(p) for p in prompts)
        if -(-longest // 16) * 16 + max_tokens > self.max_positions:
            raise RequestError(f"this model's maximum context length is {self.max_positions} tokens; the prompt "
                               f"({longest} tokens) plus max_tokens ({max_tokens}) does not fit",
                               param="max_tokens", code="context_length_exceeded")
        rows = [list(p) for p in prompts for _ in range(n)]
        job = _Job(rows, float(temperature), float(top_p), int(max_tokens), seed, concurrent.futures.Future())
        with self._waiting_lock:
            self._waiting += len(rows)
        self._queue.put(job)
        return job.future

    def pending_rows(self) -> int:
        """Rows submitted and not yet taken into a sampler call."""
        with self._waiting_lock:
            return self._waiting

    @contextlib.contextmanager
    def paused(self):
        """No batch starts while inside (requests queue up): lets tests and benchmarks fill a batch exactly."""
        with self._gate:
            yield

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    # ---------------------------------------------------------------- engine thread
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            with self._gate:
                jobs, rows = [first], len(first.prompts)
                while rows < self.max_batch_rows:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        self._queue.put(None)
                        break
                    jobs.append(job)
                    rows += len(job.prompts)
                with self._waiting_lock:
                    self._waiting -= rows
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(self._group_key(job), []).append(job)
            for (temperature, top_p, seed, _), group in groups.items():
                try:
                    self._run(group, temperature, top_p, seed)
                except Exception as e:  # a failed call fails its requests, never the server
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(e)

    @staticmethod
    def _group_key(job: _Job) -> tuple:
        """Jobs with equal keys share a sampler call. Greedy ignores top_p and seed, so all greedy jobs batch
        together; a seeded sampling job runs alone, so its samples depend only on the request."""
        if job.temperature == 0:
            return 0.0, 1.0, None, None
        return job.temperature, job.top_p, job.seed, None if job.seed is None else id(job)

    def _run(self, jobs: list[_Job], temperature: float, top_p: float, seed: int | None) -> None:
        from ieta_jax import sampling

        prompts = [p for job in jobs for p in job.prompts]
        n_rows = len(prompts)
        padded = prompts + [prompts[-1]] * (_bucket_pow2(n_rows) - n_rows)
        max_tokens = max(job.max_tokens for job in jobs)
        longest = -(-max(len(p) for p in prompts) // 16) * 16
        steps = min(-(-max_tokens // LENGTH_BUCKET) * LENGTH_BUCKET, self.max_positions - longest)
        rng = seed if seed is not None else next(self._rng)
        self.sampler_calls += 1
        self.batch_rows.append(n_rows)
        out = sampling.generate(self.model, padded, max_new_tokens=steps, temperature=temperature, top_p=top_p,
                                rng=rng, eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id)
        start = 0
        for job in jobs:
            rows = []
            for r in range(start, start + len(job.prompts)):
                length = min(int(out.lengths[r]), job.max_tokens)
                tokens = out.tokens[r, :length].tolist()
                eos = bool(tokens) and tokens[-1] in self.eos_ids
                if eos:
                    tokens = tokens[:-1]
                rows.append(Sampled(tokens, out.logprobs[r, :len(tokens)].tolist(), eos))
            start += len(job.prompts)
            job.future.set_result(rows)


# -------------------------------------------------------------------- request parsing
def _field(body: dict, name: str, types, default, check=None, what: str = ""):
    value = body.get(name, default)
    if value is None:
        value = default
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RequestError(f"'{name}' must be {what}, got {value!r}", param=name)
    if not isinstance(value, types) or (check is not None and not check(value)):
        raise RequestError(f"'{name}' must be {what}, got {value!r}", param=name)
    return value


@dataclasses.dataclass
class SamplingRequest:
    n: int
    temperature: float
    top_p: float
    max_tokens: int | None
    stop: list[str]
    seed: int | None
    stream: bool
    include_usage: bool


def parse_sampling(body: dict, *, max_tokens_default: int | None) -> SamplingRequest:
    """The sampling fields common to both endpoints, validated (RequestError names the field)."""
    n = _field(body, "n", int, 1, lambda v: 1 <= v <= MAX_N, f"an integer in [1, {MAX_N}]")
    temperature = _field(body, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 2, "a number in [0, 2]")
    top_p = _field(body, "top_p", (int, float), 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]")
    max_tokens = _field(body, "max_completion_tokens", int, None, lambda v: v >= 1, "an integer >= 1")
    if max_tokens is None:
        max_tokens = _field(body, "max_tokens", int, max_tokens_default, lambda v: v >= 1, "an integer >= 1")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise RequestError(f"'stop' must be a string or a list of strings, got {stop!r}", param="stop")
    stop = [s for s in stop if s]
    seed = _field(body, "seed", int, None, None, "an integer")
    stream = _field(body, "stream", bool, False, None, "true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    for name, default in (("presence_penalty", 0), ("frequency_penalty", 0)):
        if body.get(name) not in (None, default, 0.0):
            raise RequestError(f"'{name}' is not supported by this server (the sampler has no penalties)",
                               param=name)
    if body.get("logit_bias"):
        raise RequestError("'logit_bias' is not supported by this server", param="logit_bias")
    best_of = body.get("best_of")
    if best_of not in (None, n):
        raise RequestError("'best_of' other than n is not supported by this server", param="best_of")
    return SamplingRequest(n, float(temperature), float(top_p), max_tokens, stop, seed, stream,
                           bool(options.get("include_usage")))


def token_pieces(tokenizer, tokens: Sequence[int]) -> list[str]:
    """Text contributed by each token; their concatenation is the decoded text.

    A token that ends inside a multi-byte character contributes "" and the character goes with the token that
    completes it.
    """
    pieces, prev = [], ""
    for i in range(1, len(tokens) + 1):
        cur = tokenizer.decode(list(tokens[:i]), skip_special_tokens=True)
        if cur.endswith("\ufffd") and i < len(tokens):
            pieces.append("")
            continue
        pieces.append(cur[len(prev):])
        prev = cur
    return pieces


@dataclasses.dataclass
class Choice:
    """A finished sample as the API reports it: text (cut at the first stop string), its tokens, finish reason."""

    text: str
    pieces: list[str]
    logprobs: list[float]
    finish_reason: str
    completion_tokens: int


def make_choice(tokenizer, row: Sampled, stop: Sequence[str]) -> Choice:
    pieces = token_pieces(tokenizer, row.tokens)
    text = "".join(pieces)
    cuts = [i for i in (text.find(s) for s in stop) if i != -1]
    if cuts:
        cut, kept, used = min(cuts), [], 0
        for piece in pieces:
            if used >= cut:
                break
            kept.append(piece[:cut - used])
            used += len(piece)
        return Choice(text[:cut], kept, row.logprobs[:len(kept)], "stop", len(kept))
    return Choice(text, pieces, row.logprobs, "stop" if row.eos else "length", len(row.tokens) + row.eos)


# -------------------------------------------------------------------- the API
class API:
    """The OpenAI endpoints over an Engine: plain dict in, (status, dict | SSE iterator) out."""

    def __init__(self, engine: Engine, model_name: str):
        self.engine, self.model_name, self.created = engine, model_name, int(time.time())
        self._tok_lock = threading.Lock()  # one fast tokenizer, many handler threads

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": self.created,
                                            "owned_by": "ieta-jax"}]}

    def _check_model(self, body: dict) -> None:
        model = body.get("model")
        if not isinstance(model, str):
            raise RequestError("'model' is required", param="model")
        if model != self.model_name:
            raise RequestError(f"The model '{model}' does not exist; this server serves '{self.model_name}'",
                               param="model", status=404, code="model_not_found")

    def _encode(self, text: str) -> list[int]:
        with self._tok_lock:
            ids = self.engine.tokenizer(text)["input_ids"]
        if not ids:
            raise RequestError("the prompt is empty after tokenization", param="prompt")
        return ids

    def _prompts(self, prompt) -> list[list[int]]:
        vocab = self.engine.model.config.vocab_size
        if isinstance(prompt, str):
            return [self._encode(prompt)]
        if isinstance(prompt, list) and prompt:
            if all(isinstance(p, str) for p in prompt):
                return [self._encode(p) for p in prompt]
            if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
                prompt = [prompt]
            if all(isinstance(p, list) and p and all(isinstance(t, int) and 0 <= t < vocab for t in p)
                   for p in prompt):
                return [list(p) for p in prompt]
        raise RequestError("'prompt' must be a non-empty string, list of strings, or list of token ids "
                           f"in [0, {vocab})", param="prompt")

    def _sample(self, prompts, s: SamplingRequest):
        future = self.engine.submit(prompts, n=s.n, temperature=s.temperature, top_p=s.top_p,
                                    max_tokens=s.max_tokens, seed=s.seed)
        rows = future.result()
        with self._tok_lock:
            choices = [make_choice(self.engine.tokenizer, row, s.stop) for row in rows]
        usage = {"prompt_tokens": sum(len(p) for p in prompts),
                 "completion_tokens": sum(c.completion_tokens for c in choices)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return choices, usage

    def completions(self, body: dict):
        self._check_model(body)
        if body.get("echo"):
            raise RequestError("'echo' is not supported by this server", param="echo")
        if body.get("suffix"):
            raise RequestError("'suffix' is not supported by this server", param="suffix")
        s = parse_sampling(body, max_tokens_default=16)
        logprobs = _field(body, "logprobs", int, None, lambda v: 0 <= v <= 1,
                          "0 or 1 (this server reports the sampled token's log-probability only)")
        prompts = self._prompts(body.get("prompt"))
        choices, usage = self._sample(prompts, s)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def lp(c: Choice, start: int = 0, stop: int | None = None):
            if logprobs is None:
                return None
            offsets = list(itertools.accumulate((len(p) for p in c.pieces), initial=0))
            pieces, values = c.pieces[start:stop], c.logprobs[start:stop]
            return {"tokens": pieces, "token_logprobs": values,
                    "top_logprobs": [{p: v} for p, v in zip(pieces, values)] if logprobs else None,
                    "text_offset": offsets[start:start + len(pieces)]}

        if not s.stream:
            return 200, {"id": rid, "object": "text_completion", "created": created, "model": self.model_name,
                         "choices": [{"index": i, "text": c.text, "logprobs": lp(c), "finish_reason": c.finish_reason}
                                     for i, c in enumerate(choices)], "usage": usage}

        def events():
            base = {"id": rid, "object": "text_completion", "created": created, "model": self.model_name}
            for i, c in enumerate(choices):
                for t, piece in enumerate(c.pieces):
                    yield {**base, "choices": [{"index": i, "text": piece, "logprobs": lp(c, t, t + 1),
                                                "finish_reason": None}]}
                yield {**base, "choices": [{"index": i, "text": "", "logprobs": None,
                                            "finish_reason": c.finish_reason}]}
            if s.include_usage:
                yield {**base, "choices": [], "usage": usage}
        return 200, events()

    def chat_completions(self, body: dict):
        from ieta_jax.data.completions import has_chat_template

        self._check_model(body)
        messages = body.get("messages")
        if not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise RequestError("'messages' must be a non-empty list of {role, content} objects with string content",
                               param="messages")
        tok = self.engine.tokenizer
        if not has_chat_template(tok):
            raise RequestError(f"the model '{self.model_name}' has no chat template; use /v1/completions",
                               param="messages")
        logprobs = _field(body, "logprobs", bool, False, None, "true or false")
        _field(body, "top_logprobs", int, 0, lambda v: v == 0,
               "0 (this server reports the sampled token's log-probability only)")  # validated, nothing more
        with self._tok_lock:
            text = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in messages],
                                           tokenize=False, add_generation_prompt=True)
        prompt = self._encode(text)
        s = parse_sampling(body, max_tokens_default=None)
        if s.max_tokens is None:
            s.max_tokens = max(1, self.engine.max_positions - (-(-len(prompt) // 16) * 16))
        choices, usage = self._sample([prompt], s)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def lp(c: Choice, start: int = 0, stop: int | None = None):
            if not logprobs:
                return None
            return {"content": [{"token": p, "logprob": v, "bytes": list(p.encode()), "top_logprobs": []}
                                for p, v in zip(c.pieces[start:stop], c.logprobs[start:stop])]}

        if not s.stream:
            return 200, {"id": rid, "object": "chat.completion", "created": created, "model": self.model_name,
                         "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                                      "logprobs": lp(c), "finish_reason": c.finish_reason}
                                     for i, c in enumerate(choices)], "usage": usage}

        def events():
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.model_name}
            for i, c in enumerate(choices):
                yield {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]}
                for t, piece in enumerate(c.pieces):
                    yield {**base, "choices": [{"index": i, "delta": {"content": piece}, "logprobs": lp(c, t, t + 1),
                                                "finish_reason": None}]}
                yield {**base, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                            "finish_reason": c.finish_reason}]}
            if s.include_usage:
                yield {**base, "choices": [], "usage": usage}
        return 200, events()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: API  # set on the subclass built by Server

    def log_message(self, fmt, *args):  # quiet: one line per request only with --verbose
        if getattr(self.server, "verbose", False):
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _send_json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, events: Iterator[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def do_GET(self):
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            return self._send_json(200, self.api.models())
        if self.path.rstrip("/") == "/health":
            return self._send_json(200, {"status": "ok"})
        self._send_json(404, RequestError(f"no route GET {self.path}", status=404, code="not_found").body())

    def do_POST(self):
        routes = {"/v1/completions": self.api.completions, "/v1/chat/completions": self.api.chat_completions}
        route = routes.get(self.path.rstrip("/"))
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if route is None:
                raise RequestError(f"no route POST {self.path}", status=404, code="not_found")
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise RequestError("the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            status, result = route(body)
        except RequestError as e:
            return self._send_json(e.status, e.body())
        except Exception as e:  # the sampler failed: a server error, reported in the same shape
            return self._send_json(500, RequestError(f"{type(e).__name__}: {e}", status=500,
                                                     type="server_error").body())
        if isinstance(result, dict):
            self._send_json(status, result)
        else:
            self._send_events(result)


class Server:
    """The HTTP server on a background thread: `Server(api, port=0).start()`; `.url` is the /v1 base URL."""

    def __init__(self, api: API, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False):
        handler = type("Handler", (_Handler,), {"api": api})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.verbose = verbose
        self.api = api
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="serve-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.api.engine.close()

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.close()


def load(model_dir: str, *, dtype: str = "float32", tensor: int = 1, max_batch_rows: int = 64, seed: int = 0,
         model_name: str | None = None) -> API:
    """An API over the checkpoint in `model_dir` (weights on a ("data", "fsdp", "tensor") mesh of all devices)."""
    from ieta_jax import models, sharding

    mesh = sharding.make_mesh(data=-1, fsdp=1, tensor=tensor)
    model = models.from_pretrained(model_dir, dtype=dtype, mesh=mesh)
    tokenizer = models.load_tokenizer(model_dir)
    name = model_name or os.path.basename(os.path.normpath(model_dir))
    return API(Engine(model, tokenizer, max_batch_rows=max_batch_rows, seed=seed), name)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ieta_jax.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint directory (config.json, safetensors, tokenizer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--served_model_name", default=None, help="the model id clients use (default: the dir's name)")
    p.add_argument("--dtype", default="float32", help="compute dtype (float32, bfloat16)")
    p.add_argument("--tensor", type=int, default=1, help="tensor-parallel mesh axis size")
    p.add_argument("--max_batch_rows", type=int, default=64, help="most sequences in one sampler call")
    p.add_argument("--seed", type=int, default=0, help="seeds requests that give no seed")
    p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        print(f"error: --model {args.model} is not a checkpoint directory (no config.json)", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535 or args.max_batch_rows < 1 or args.tensor < 1:
        print("error: --port must be in [0, 65535], --max_batch_rows and --tensor >= 1", file=sys.stderr)
        return 2
    try:
        api = load(args.model, dtype=args.dtype, tensor=args.tensor, max_batch_rows=args.max_batch_rows,
                   seed=args.seed, model_name=args.served_model_name)
        server = Server(api, args.host, args.port, verbose=args.verbose)
    except (ValueError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    print(f"serving {api.model_name} at {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        api.engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
