"""Calls to hosted models through the official `openai` and `anthropic` clients: retries, a disk cache, usage.

An endpoint is a URI plus a model name:

    openai://                      https://api.openai.com/v1 (OPENAI_API_KEY)
    openai://127.0.0.1:8000/v1     any OpenAI-compatible server (vLLM, SGLang, TGI, Ollama, ieta_jax.serve);
                                   loopback hosts use http and need no key
    openai+https://host/v1         an explicit scheme (also openai+http://)
    anthropic://                   https://api.anthropic.com (ANTHROPIC_API_KEY); anthropic://host:port likewise

Every request is sent with the client's own retries off: 429, 5xx, timeouts and connection errors are retried
here with exponential backoff (honouring Retry-After), so the policy is the same for both providers. 401/403/404
and other 4xx stop at once with one line that names what to fix. Responses are cached on disk, keyed by the
endpoint (provider and base URL, not the key), model and the full request, so a repeated or resumed run never
pays twice; the same model moved to another host is asked again (see `APIClient.call`).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import inspect
import json
import os
import threading
import time
import urllib.parse
from typing import Any, Callable, Sequence

from ieta_jax import workdir

PROVIDERS = {"openai": ("OPENAI_API_KEY", "https://api.openai.com/v1"),
             "anthropic": ("ANTHROPIC_API_KEY", "https://api.anthropic.com")}
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class APIError(RuntimeError):
    """A request that cannot succeed as configured (bad key, unknown model, bad request); one line."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    provider: str      # "openai" | "anthropic"
    base_url: str
    model: str
    api_key_env: str

    @property
    def local(self) -> bool:
        return urllib.parse.urlparse(self.base_url).hostname in LOOPBACK

    def api_key(self) -> str:
        """The key from `api_key_env`; loopback servers take any key. APIError (one line) when it is missing, so
        callers can check it before they write anything."""
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.local:
            return "unused"
        raise APIError(f"{self.api_key_env} is not set; export it to call {self.base_url}")


def parse_endpoint(uri: str, model: str) -> Endpoint:
    """`openai://...` / `anthropic://...` (module docstring) and a model name -> Endpoint; ValueError if bad."""
    scheme, sep, rest = uri.partition("://")
    provider, _, transport = scheme.partition("+")
    if not sep or provider not in PROVIDERS or transport not in ("", "http", "https"):
        raise ValueError(f"policy URI {uri!r} must look like openai://host[:port]/path or anthropic://host "
                         "(openai+http:// and +https:// choose the scheme)")
    if not model:
        raise ValueError(f"{uri} needs a model name (--model_name)")
    env, default = PROVIDERS[provider]
    if not rest:
        base = default
    else:
        host = urllib.parse.urlparse("//" + rest).hostname or ""
        base = f"{transport or ('http' if host in LOOPBACK else 'https')}://{rest}"
    return Endpoint(provider, base.rstrip("/"), model, env)


@dataclasses.dataclass
class Usage:
    """Requests sent and tokens paid for; `cache_hits` requests (and their tokens) cost nothing."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ResponseCache:
    """One JSON file per request under `root`, named by the SHA-256 of the request; written atomically."""

    def __init__(self, root: str):
        self.root = root

    @staticmethod
    def key(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key + ".json")

    def get(self, key: str) -> dict | None:
        try:
            with open(self._path(key)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict) -> None:
        workdir.write_json(self._path(key), value)


def _status_of(err: Exception) -> int | None:
    return getattr(err, "status_code", None)


class APIClient:
    """Sends requests to one endpoint: bounded concurrency, retries with backoff, cache, usage counts.

    `sleep` is injectable so tests can record the backoff delays without waiting them out.
    """

    def __init__(self, endpoint: Endpoint, *, cache_dir: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 6, initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 timeout_s: float = 600.0, sleep: Callable[[float], None] = time.sleep):
        self.endpoint = endpoint
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.max_concurrency, self.max_retries = max_concurrency, max_retries
        self.initial_backoff_s, self.max_backoff_s = initial_backoff_s, max_backoff_s
        self.sleep = sleep
        self.usage = Usage()
        self._lock = threading.Lock()
        key = endpoint.api_key()
        if endpoint.provider == "openai":
            import openai

            self._sdk = openai
            self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=key, max_retries=0, timeout=timeout_s)
        else:
            import anthropic

            self._sdk = anthropic
            self._client = anthropic.Anthropic(base_url=endpoint.base_url, api_key=key, max_retries=0,
                                               timeout=timeout_s)

    # ---------------------------------------------------------------- one request
    def _send(self, kind: str, request: dict) -> dict:
        if self.endpoint.provider == "anthropic":
            create = self._client.messages.create
        else:
            create = self._client.chat.completions.create if kind == "chat" else self._client.completions.create
        # Fields this SDK version does not declare (e.g. temperature/top_p in anthropic 2.x) go in the JSON
        # body as they are, so the request the server sees is the one that was asked for (and cached).
        declared = inspect.signature(create).parameters
        known = {k: v for k, v in request.items() if k in declared}
        extra = {k: v for k, v in request.items() if k not in declared}
        return create(**known, **({"extra_body": extra} if extra else {})).model_dump()

    def _fail(self, err: Exception) -> APIError:
        status, ep = _status_of(err), self.endpoint
        body = getattr(err, "message", None) or str(err)
        if status in (401, 403):
            return APIError(f"{status} from {ep.base_url}: the API key was refused; check {ep.api_key_env}")
        if status == 404:
            return APIError(f"404 from {ep.base_url}: model {ep.model!r} not found (check --model_name / the "
                            f"URI's path): {' '.join(str(body).split())[:300]}")
        return APIError(f"{status or type(err).__name__} from {ep.base_url}: {' '.join(str(body).split())[:300]}")

    def _retry_after(self, err: Exception) -> float | None:
        response = getattr(err, "response", None)
        value = response.headers.get("retry-after") if response is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def call(self, kind: str, request: dict) -> dict:
        """One request (`kind` "completions" or "chat"; Anthropic: "messages"), answered from the cache when
        it was sent before; returns the response as a plain dict."""
        # The base URL is part of the key on purpose: the same model name on another host may be another model
        # (a fine-tune or a quantization served under the original's id, a proxy's alias), and a cached answer
        # records what one server said. Moving a model to another host therefore asks again, once; the URL is
        # normalised (parse_endpoint drops a trailing "/") and the API key is not in the key (rotating it keeps
        # the cache).
        key = ResponseCache.key({"provider": self.endpoint.provider, "base_url": self.endpoint.base_url,
                                 "kind": kind, "request": request})
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._count(hit, cached=True)
                return hit
        retryable = (self._sdk.RateLimitError, self._sdk.InternalServerError, self._sdk.APITimeoutError,
                     self._sdk.APIConnectionError)
        for attempt in range(self.max_retries + 1):
            try:
                response = self._send(kind, request)
                break
            except self._sdk.APIStatusError as err:
                status = _status_of(err) or 0
                if not (status == 429 or status >= 500) or attempt == self.max_retries:
                    raise self._fail(err) from None
                wait = self._retry_after(err)
            except retryable as err:  # timeouts and connection errors (no status)
                if attempt == self.max_retries:
                    raise self._fail(err) from None
                wait = None
            delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** attempt)
            if wait is not None:
                delay = min(self.max_backoff_s, max(delay, wait))
            with self._lock:
                self.usage.retries += 1
            self.sleep(delay)
        if self.cache is not None:
            self.cache.put(key, response)
        self._count(response, cached=False)
        return response

    def _count(self, response: dict, *, cached: bool) -> None:
        u = response.get("usage") or {}
        prompt = int(u.get("prompt_tokens", u.get("input_tokens", 0)) or 0)
        completion = int(u.get("completion_tokens", u.get("output_tokens", 0)) or 0)
        with self._lock:
            if cached:
                self.usage.cache_hits += 1
                self.usage.cached_prompt_tokens += prompt
                self.usage.cached_completion_tokens += completion
            else:
                self.usage.requests += 1
                self.usage.prompt_tokens += prompt
                self.usage.completion_tokens += completion

    def map(self, kind: str, requests: Sequence[dict]) -> list[dict]:
        """Responses to `requests` in order, at most `max_concurrency` in flight."""
        if len(requests) <= 1 or self.max_concurrency <= 1:
            return [self.call(kind, r) for r in requests]
        with concurrent.futures.ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda r: self.call(kind, r), requests))
