"""An OpenAI-compatible server over a local checkpoint, on the project's sampler.

    python -m ieta_jax.serve --model runs/smoke/dpo/iter_2/policy [--port 8000] [--host 127.0.0.1]

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (the tokenizer's chat template).
Request fields: model, prompt (a string, a list of strings or of token ids) or messages, n, temperature, top_p,
max_tokens (max_completion_tokens), stop, seed, logprobs (completions: `logprobs: N`, chat: `logprobs: true` with
`top_logprobs: N`; N <= 5 most likely alternatives per token besides the sampled token's own log-probability), stream
(+ stream_options.include_usage). Fields that change the distribution in ways this sampler does not implement (echo,
best_of > n, presence/frequency penalties, logit_bias) are refused with a 400 rather than ignored.

Every request waits in one queue; the engine thread takes everything queued, groups it by sampling settings
(temperature and top_p; all greedy requests form one group; a request with a seed samples alone, so its samples
depend only on the request) and runs each group as one sampler call, so concurrent clients share a batch. Batch rows
and generation length are rounded up (powers of two, multiples of 16) so a handful of compiled programs serve all
requests. A group without a streaming request runs `sampling.generate` (one compiled loop, the fast path). A group
with one runs `sampling.generate_stream` (same samples): token 0, then chunks of STREAM_CHUNK_TOKENS steps, each
streaming request getting its new tokens after every chunk, so its SSE events leave while later tokens decode.
Text is held back only while it could be the start of a stop string (nothing at or past a stop string is sent).
Scheduling is first come, first served: a batch, streamed or not, runs to its end (at most its longest max_tokens,
and it ends early once every request in it has its tokens) before the engine takes the next, so a streaming request
delays requests that arrive during it by at most that one batch, never indefinitely; they batch together next.
Log-probabilities (sampled and alternatives) are those of the untempered, untruncated model (as
`sampling.GenerateOutput` defines them). `--warmup` compiles the common batch shapes before the server says it is
ready (see `Engine.warmup`).
"""
from __future__ import annotations

if __name__ == "__main__":  # the host allocator is chosen at process start, before JAX is imported
    from ieta_jax import allocator

    allocator.use_tcmalloc()

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

import numpy as np

MAX_N = 128
MAX_BODY_BYTES = 32 << 20      # a request body larger than this is refused (413) before it is read
MAX_TOP_LOGPROBS = 5          # as OpenAI: completions' `logprobs` and chat's `top_logprobs` are at most 5
LENGTH_BUCKET = 16
STREAM_CHUNK_TOKENS = 8       # decode steps per compiled call on the streaming path
PROMPT_WARMUP_TOKENS = 64     # --warmup compiles the prompt buckets up to this many tokens


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
    """One generated row so far: token ids (EOS excluded), their log-probabilities, whether EOS ended it, and
    whether it is finished (EOS or the request's max_tokens). top: per token, the requested number of most likely
    (id, log-probability) pairs, best first; empty lists when none were asked for."""

    tokens: list[int]
    logprobs: list[float]
    eos: bool
    done: bool = True
    top: list[list[tuple[int, float]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Job:
    prompts: list[list[int]]          # one row per sample (a prompt repeated n times)
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    future: concurrent.futures.Future
    top_logprobs: int = 0
    updates: queue.Queue | None = None  # streaming: every chunk's rows so far, then the future's result
    delivered: bool = False


def _bucket_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Engine:
    """Batches concurrent requests into sampler calls on one model (one thread runs the sampler): `submit` for a
    finished result, `stream` for rows handed out while they decode (module docstring: the scheduling)."""

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
        self.chunk_hook = None                # called on the engine thread with the steps decoded after each
                                              # streamed chunk is handed out (tests order events with it)
        self._thread = threading.Thread(target=self._loop, name="serve-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- client side
    def submit(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_tokens: int = 16, seed: int | None = None, top_logprobs: int = 0) -> concurrent.futures.Future:
        """Future of `len(prompts) * n` Sampled rows (row i*n + j is sample j of prompt i)."""
        return self._enqueue(prompts, n, temperature, top_p, max_tokens, seed, top_logprobs, stream=False).future

    def stream(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_tokens: int = 16, seed: int | None = None, top_logprobs: int = 0) -> Iterator[list[Sampled]]:
        """`submit`'s rows as they are decoded: snapshots of every row so far, the last one with every row done.
        The request is queued here, before the first `next`."""
        job = self._enqueue(prompts, n, temperature, top_p, max_tokens, seed, top_logprobs, stream=True)

        def snapshots():
            while True:
                item = job.updates.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if all(row.done for row in item):
                    return
        return snapshots()

    def _enqueue(self, prompts, n, temperature, top_p, max_tokens, seed, top_logprobs, stream) -> _Job:
        longest = max(len(p) for p in prompts)
        if -(-longest // 16) * 16 + max_tokens > self.max_positions:
            raise RequestError(f"this model's maximum context length is {self.max_positions} tokens; the prompt "
                               f"({longest} tokens) plus max_tokens ({max_tokens}) does not fit",
                               param="max_tokens", code="context_length_exceeded")
        rows = [list(p) for p in prompts for _ in range(n)]
        job = _Job(rows, float(temperature), float(top_p), int(max_tokens), seed, concurrent.futures.Future(),
                   int(top_logprobs), queue.Queue() if stream else None)
        with self._waiting_lock:
            self._waiting += len(rows)
        self._queue.put(job)
        return job

    def pending_rows(self) -> int:
        """Rows submitted and not yet taken into a sampler call."""
        with self._waiting_lock:
            return self._waiting

    @contextlib.contextmanager
    def paused(self):
        """No batch starts while inside (requests queue up): lets tests and benchmarks fill a batch exactly."""
        with self._gate:
            yield

    def warmup(self, prompt_tokens: int = PROMPT_WARMUP_TOKENS, max_tokens: int = LENGTH_BUCKET) -> int:
        """Compiles the programs common requests use, before the server reports ready: for every prompt bucket up
        to `prompt_tokens` and every batch size (powers of two up to max_batch_rows) the one-loop sampler with
        `max_tokens` new tokens, and for one row also its top-logprobs variant and the streaming programs.
        Other shapes (longer prompts or max_tokens) still compile on first use. Returns the sampler calls made
        (not counted in `sampler_calls`)."""
        from ieta_jax import sampling

        kw = dict(max_new_tokens=max_tokens, eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id)
        calls = 0
        for length in range(sampling.PROMPT_BUCKET, min(prompt_tokens, self.max_positions - max_tokens) + 1,
                            sampling.PROMPT_BUCKET):
            prompt, rows = [self.pad_id] * length, 1
            while rows <= _bucket_pow2(self.max_batch_rows):
                sampling.generate(self.model, [prompt] * rows, **kw)
                rows, calls = rows * 2, calls + 1
            sampling.generate(self.model, [prompt], top_logprobs=MAX_TOP_LOGPROBS, **kw)
            for _ in sampling.generate_stream(self.model, [prompt], chunk_tokens=STREAM_CHUNK_TOKENS, **kw):
                pass
            calls += 2
        return calls

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
                        if job.updates is not None and not job.delivered:
                            job.updates.put(e)

    @staticmethod
    def _group_key(job: _Job) -> tuple:
        """Jobs with equal keys share a sampler call. Greedy ignores top_p and seed, so all greedy jobs batch
        together; a seeded sampling job runs alone, so its samples depend only on the request."""
        if job.temperature == 0:
            return 0.0, 1.0, None, None
        return job.temperature, job.top_p, job.seed, None if job.seed is None else id(job)

    def _run(self, jobs: list[_Job], temperature: float, top_p: float, seed: int | None) -> None:
        """One sampler call for `jobs`: the one-loop `generate` unless a job streams, else `generate_stream`,
        handing each streaming job its rows after every chunk and ending once every job has its rows."""
        from ieta_jax import sampling

        prompts = [p for job in jobs for p in job.prompts]
        n_rows = len(prompts)
        padded = prompts + [prompts[-1]] * (_bucket_pow2(n_rows) - n_rows)
        max_tokens = max(job.max_tokens for job in jobs)
        longest = -(-max(len(p) for p in prompts) // 16) * 16
        steps = min(-(-max_tokens // LENGTH_BUCKET) * LENGTH_BUCKET, self.max_positions - longest)
        rng = seed if seed is not None else next(self._rng)
        top_n = MAX_TOP_LOGPROBS if any(job.top_logprobs for job in jobs) else 0
        self.sampler_calls += 1
        self.batch_rows.append(n_rows)
        kw = dict(max_new_tokens=steps, temperature=temperature, top_p=top_p, rng=rng, top_logprobs=top_n,
                  eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id)
        if not any(job.updates is not None for job in jobs):
            out = sampling.generate(self.model, padded, **kw)
            done = np.ones(len(padded), bool)
            self._deliver(jobs, out.tokens, out.logprobs, out.lengths, done, out.top_ids, out.top_logprobs)
            return
        parts = []
        for chunk in sampling.generate_stream(self.model, padded, chunk_tokens=STREAM_CHUNK_TOKENS, **kw):
            parts.append(chunk)
            tokens, logprobs = (np.concatenate([getattr(c, f) for c in parts], 1) for f in ("tokens", "logprobs"))
            top_ids, top_logprobs = ((np.concatenate([getattr(c, f) for c in parts], 1) if top_n else None)
                                     for f in ("top_ids", "top_logprobs"))
            done = chunk.done | (chunk.lengths >= steps)
            finished = self._deliver(jobs, tokens, logprobs, chunk.lengths, done, top_ids, top_logprobs)
            if self.chunk_hook is not None:
                self.chunk_hook(chunk.start + chunk.tokens.shape[1])
            if finished:
                break  # every request has its rows; the rest of the length bucket is not decoded
        if not all(job.delivered for job in jobs):  # generate_stream ended with a row neither at EOS nor at length
            raise RuntimeError("the streaming sampler stopped before every request was complete")

    def _deliver(self, jobs, tokens, logprobs, lengths, done, top_ids, top_logprobs) -> bool:
        """Hands each job its rows: streaming jobs a snapshot now, any job its result once all its rows are done.
        A row is done at EOS or at the job's max_tokens. Returns whether every job has its result."""
        start = 0
        for job in jobs:
            if job.delivered:
                start += len(job.prompts)
                continue
            rows = []
            for r in range(start, start + len(job.prompts)):
                length = min(int(lengths[r]), job.max_tokens)
                row_tokens = tokens[r, :length].tolist()
                eos = bool(row_tokens) and bool(done[r]) and row_tokens[-1] in self.eos_ids
                if eos:
                    row_tokens = row_tokens[:-1]
                n = len(row_tokens)
                top = [] if not job.top_logprobs else [
                    list(zip(top_ids[r, t, :job.top_logprobs].tolist(), top_logprobs[r, t, :job.top_logprobs].tolist()))
                    for t in range(n)]
                rows.append(Sampled(row_tokens, logprobs[r, :n].tolist(), eos,
                                    bool(done[r]) or length >= job.max_tokens, top))
            start += len(job.prompts)
            finished = all(row.done for row in rows)
            if job.updates is not None and (finished or any(row.tokens for row in rows)):
                job.updates.put(rows)
            if finished:
                job.delivered = True
                job.future.set_result(rows)
        return all(job.delivered for job in jobs)


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


@dataclasses.dataclass
class Piece:
    """The text one token contributes ("" for a token that ends inside a multi-byte character: the character goes
    with the token that completes it), where it starts in the completion, its log-probability and alternatives."""

    text: str
    offset: int
    logprob: float
    top: list[tuple[int, float]]


class TextStream:
    """One sample's text as its tokens arrive: the pieces that may be sent, never text at or past a stop string.

    `update(row)` takes the row so far (a `Sampled` snapshot) and returns the pieces that became safe to send. A
    piece is held back while the text it ends could still turn out to begin a stop string, and while its token
    ends inside a multi-byte character. When the row is done (or a stop string appears) `finish_reason` and
    `completion_tokens` are set and nothing more is returned. Fed all tokens at once it is the non-streamed choice.
    """

    def __init__(self, tokenizer, stop: Sequence[str]):
        self.tokenizer, self.stop = tokenizer, list(stop)
        self.pieces: list[Piece] = []     # every decoded token's piece (sent or held back)
        self.text = ""                    # the pieces joined
        self.sent = 0                     # pieces handed out
        self.finish_reason: str | None = None
        self.completion_tokens = 0

    def update(self, row: Sampled) -> list[Piece]:
        if self.finish_reason is not None:
            return []
        tokens = row.tokens
        for i in range(len(self.pieces) + 1, len(tokens) + 1):
            cur = self.tokenizer.decode(tokens[:i], skip_special_tokens=True)
            if cur.endswith("\ufffd") and i == len(tokens) and not row.done:
                break  # the character may complete with the next token
            piece = "" if cur.endswith("\ufffd") and i < len(tokens) else cur[len(self.text):]
            self.pieces.append(Piece(piece, len(self.text), row.logprobs[i - 1],
                                     row.top[i - 1] if row.top else []))
            self.text += piece
        cuts = [i for i in (self.text.find(s) for s in self.stop) if i != -1]
        if cuts:
            cut = min(cuts)
            kept = [dataclasses.replace(p, text=p.text[:cut - p.offset]) for p in self.pieces if p.offset < cut]
            self.finish_reason, self.completion_tokens = "stop", len(kept)
            return kept[self.sent:]
        if row.done:
            self.finish_reason = "stop" if row.eos else "length"
            self.completion_tokens = len(tokens) + row.eos
            return self.pieces[self.sent:]
        hold = max((h for s in self.stop for h in range(1, len(s)) if self.text.endswith(s[:h])), default=0)
        safe = len(self.text) - hold
        out = []
        while self.sent < len(self.pieces) and self.pieces[self.sent].offset + len(self.pieces[self.sent].text) <= safe:
            out.append(self.pieces[self.sent])
            self.sent += 1
        return out


@dataclasses.dataclass
class Choice:
    """A finished sample as the API reports it: text (cut at the first stop string), its pieces, finish reason."""

    text: str
    pieces: list[Piece]
    finish_reason: str
    completion_tokens: int


def make_choice(tokenizer, row: Sampled, stop: Sequence[str]) -> Choice:
    stream = TextStream(tokenizer, stop)
    pieces = stream.update(row)
    return Choice("".join(p.text for p in pieces), pieces, stream.finish_reason, stream.completion_tokens)


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

    def _usage(self, prompts, completion_tokens: int) -> dict:
        prompt_tokens = sum(len(p) for p in prompts)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def _sample(self, prompts, s: SamplingRequest, top_logprobs: int):
        future = self.engine.submit(prompts, n=s.n, temperature=s.temperature, top_p=s.top_p,
                                    max_tokens=s.max_tokens, seed=s.seed, top_logprobs=top_logprobs)
        rows = future.result()
        with self._tok_lock:
            choices = [make_choice(self.engine.tokenizer, row, s.stop) for row in rows]
        return choices, self._usage(prompts, sum(c.completion_tokens for c in choices))

    def _stream(self, prompts, s: SamplingRequest, top_logprobs: int, base: dict, start, delta, finish):
        """SSE events of a streamed request, sent as the engine decodes: per choice (`index`), `start(i)` once,
        `delta(i, piece)` per piece as soon as it is safe to send, `finish(i, reason)` when that choice ends; then
        the usage chunk if asked for. An engine failure mid-stream becomes an error event."""
        snapshots = self.engine.stream(prompts, n=s.n, temperature=s.temperature, top_p=s.top_p,
                                       max_tokens=s.max_tokens, seed=s.seed, top_logprobs=top_logprobs)

        def events():
            texts = [TextStream(self.engine.tokenizer, s.stop) for _ in range(len(prompts) * s.n)]
            for i in range(len(texts)):
                if start is not None:
                    yield {**base, "choices": [start(i)]}
            try:
                for rows in snapshots:
                    for i, (text, row) in enumerate(zip(texts, rows)):
                        if text.finish_reason is not None:
                            continue
                        with self._tok_lock:
                            pieces = text.update(row)
                        for piece in pieces:
                            yield {**base, "choices": [delta(i, piece)]}
                        if text.finish_reason is not None:
                            yield {**base, "choices": [finish(i, text.finish_reason)]}
                    if all(t.finish_reason is not None for t in texts):
                        break
            except Exception as e:
                yield {"error": RequestError(f"{type(e).__name__}: {e}", status=500, type="server_error").body()["error"]}
                return
            if s.include_usage:
                yield {**base, "choices": [], "usage": self._usage(prompts, sum(t.completion_tokens for t in texts))}
        return events()

    def _alternatives(self, top: list[tuple[int, float]]) -> list[tuple[str, float]]:
        with self._tok_lock:
            return [(self.engine.tokenizer.decode([i], skip_special_tokens=False), v) for i, v in top]

    def completions(self, body: dict):
        self._check_model(body)
        if body.get("echo"):
            raise RequestError("'echo' is not supported by this server", param="echo")
        if body.get("suffix"):
            raise RequestError("'suffix' is not supported by this server", param="suffix")
        s = parse_sampling(body, max_tokens_default=16)
        logprobs = _field(body, "logprobs", int, None, lambda v: 0 <= v <= MAX_TOP_LOGPROBS,
                          f"an integer in [0, {MAX_TOP_LOGPROBS}]")
        prompts = self._prompts(body.get("prompt"))
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def lp(pieces: list[Piece]):
            if logprobs is None:
                return None
            return {"tokens": [p.text for p in pieces], "token_logprobs": [p.logprob for p in pieces],
                    "top_logprobs": [dict(self._alternatives(p.top)) for p in pieces] if logprobs else None,
                    "text_offset": [p.offset for p in pieces]}

        if s.stream:
            base = {"id": rid, "object": "text_completion", "created": created, "model": self.model_name}
            return 200, self._stream(
                prompts, s, logprobs or 0, base, None,
                lambda i, p: {"index": i, "text": p.text, "logprobs": lp([p]), "finish_reason": None},
                lambda i, reason: {"index": i, "text": "", "logprobs": None, "finish_reason": reason})
        choices, usage = self._sample(prompts, s, logprobs or 0)
        return 200, {"id": rid, "object": "text_completion", "created": created, "model": self.model_name,
                     "choices": [{"index": i, "text": c.text, "logprobs": lp(c.pieces), "finish_reason": c.finish_reason}
                                 for i, c in enumerate(choices)], "usage": usage}

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
        top_logprobs = _field(body, "top_logprobs", int, 0, lambda v: 0 <= v <= MAX_TOP_LOGPROBS,
                              f"an integer in [0, {MAX_TOP_LOGPROBS}]")
        if top_logprobs and not logprobs:
            raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        with self._tok_lock:
            text = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in messages],
                                           tokenize=False, add_generation_prompt=True)
        prompt = self._encode(text)
        s = parse_sampling(body, max_tokens_default=None)
        if s.max_tokens is None:
            s.max_tokens = max(1, self.engine.max_positions - (-(-len(prompt) // 16) * 16))
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def entry(token: str, value: float) -> dict:
            return {"token": token, "logprob": value, "bytes": list(token.encode())}

        def lp(pieces: list[Piece]):
            if not logprobs:
                return None
            return {"content": [{**entry(p.text, p.logprob),
                                 "top_logprobs": [entry(t, v) for t, v in self._alternatives(p.top)]}
                                for p in pieces]}

        if s.stream:
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.model_name}
            return 200, self._stream(
                [prompt], s, top_logprobs, base,
                lambda i: {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                           "finish_reason": None},
                lambda i, p: {"index": i, "delta": {"content": p.text}, "logprobs": lp([p]), "finish_reason": None},
                lambda i, reason: {"index": i, "delta": {}, "logprobs": None, "finish_reason": reason})
        choices, usage = self._sample([prompt], s, top_logprobs)
        return 200, {"id": rid, "object": "chat.completion", "created": created, "model": self.model_name,
                     "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                                  "logprobs": lp(c.pieces), "finish_reason": c.finish_reason}
                                 for i, c in enumerate(choices)], "usage": usage}


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
            self.wfile.flush()
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
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:  # (rfile.read(-1) would wait for a close that never comes)
                self.close_connection = True
                raise RequestError(f"Content-Length must be an integer in [0, {MAX_BODY_BYTES}], got "
                                   f"{self.headers.get('Content-Length')!r}", status=413 if length > 0 else 400)
            raw = self.rfile.read(length) if length else b""
            if route is None:
                raise RequestError(f"no route POST {self.path}", status=404, code="not_found")
            try:
                body = json.loads(raw or b"null")
            except (ValueError, RecursionError):
                raise RequestError("the request body is not valid JSON (or nests too deeply)") from None
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
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="compute dtype")
    p.add_argument("--tensor", type=int, default=1, help="tensor-parallel mesh axis size")
    p.add_argument("--max_batch_rows", type=int, default=64, help="most sequences in one sampler call")
    p.add_argument("--seed", type=int, default=0, help="seeds requests that give no seed")
    p.add_argument("--warmup", action="store_true",
                   help="compile every batch size's sampler for prompts up to 64 tokens and 16 new tokens (and the "
                        "logprobs and streaming variants for one row) before printing the ready line")
    p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        print(f"error: --model {args.model} is not a checkpoint directory (no config.json)", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535 or args.max_batch_rows < 1 or args.tensor < 1:
        print("error: --port must be in [0, 65535], --max_batch_rows and --tensor >= 1", file=sys.stderr)
        return 2
    try:
        return _serve(args)
    except KeyboardInterrupt:  # Ctrl-C while loading or warming up; while serving it is the way to stop (exit 0)
        print("interrupted", file=sys.stderr)
        return 130


def _serve(args) -> int:
    """Checks the checkpoint and the address, loads, serves until Ctrl-C; 2 with one line for what is wrong."""
    import socket

    from ieta_jax.models import checkpoint_dir

    try:
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        print(f"error: --host {args.host}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 2
    try:
        checkpoint_dir.check(args.model)
    except checkpoint_dir.CheckpointError as e:
        print(f"error: --model {args.model}: {e}", file=sys.stderr)
        return 2
    from ieta_jax import sharding

    try:
        sharding.make_mesh(data=-1, fsdp=1, tensor=args.tensor)  # the mesh `load` makes, checked on its own
    except ValueError as e:
        print(f"error: --tensor {args.tensor}: {e}", file=sys.stderr)
        return 2
    try:
        api = load(args.model, dtype=args.dtype, tensor=args.tensor, max_batch_rows=args.max_batch_rows,
                   seed=args.seed, model_name=args.served_model_name)
    except Exception as e:  # noqa: BLE001 - what the checks did not foresee: a tensor missing, a mesh that does not fit
        print(f"error: --model {args.model} {checkpoint_dir.load_error(e)}", file=sys.stderr)
        return 2
    try:
        server = Server(api, args.host, args.port, verbose=args.verbose)
    except OSError as e:  # the port is taken, or the address is not this machine's
        api.engine.close()
        print(f"error: --host {args.host} --port {args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        if args.warmup:
            start = time.perf_counter()
            calls = api.engine.warmup()
            print(f"warmed up: {calls} sampler calls in {time.perf_counter() - start:.1f}s", file=sys.stderr,
                  flush=True)
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
    from ieta_jax import cli

    cli.exit(main())
