"""A hosted model as a policy: `generate(prompts, n, temperature, top_p, max_new_tokens, seed)` over an API.

Prompts are the same text a local policy sees before tokenization: `prompt_for(task)` gives the task prompt for
completion models and, for chat models, the user message of the project's chat template (the instruction and
the prompt in a ```python block, `data.format_prompt`). `completion_for(sample, task)` turns an answer into a
completion exactly as for local samples (stop sequences, or the first fenced block for chat).

OpenAI-compatible endpoints get one request per prompt with `n`; Anthropic's Messages API has no `n`, so it
gets one request per sample (sample j's metadata.user_id carries j, which keeps the n requests distinct).
Samples are reproducible per seed on servers that honour OpenAI's `seed`, and repeatable everywhere through
the cache.
"""
from __future__ import annotations

from typing import Any, Sequence

from ieta_jax.api.client import APIClient, parse_endpoint

MODES = ("completions", "chat")


class _Messages:
    """A stand-in tokenizer whose chat template is the identity: format_prompt(..., chat=True) returns the
    message list it would have rendered, so API chat prompts are built by the one template function."""

    chat_template = "messages"

    @staticmethod
    def apply_chat_template(messages, **_):
        return messages


def chat_messages(task: Any, system: str | None = None) -> list[dict]:
    """The messages of the project's chat prompt for `task` (data.format_prompt's content)."""
    from ieta_jax.data import completions

    return completions.format_prompt(task, _Messages(), chat=True, system=system)


class APIPolicy:
    """The policy interface over an `openai://` or `anthropic://` endpoint (see ieta_jax.api.client)."""

    def __init__(self, uri: str, model_name: str, *, mode: str | None = None, stop: Sequence[str] | None = None,
                 system: str | None = None, cache_dir: str | None = None, **client_options):
        self.endpoint = parse_endpoint(uri, model_name)
        if mode is None:
            mode = "chat" if self.endpoint.provider == "anthropic" else "completions"
        if mode not in MODES or (self.endpoint.provider == "anthropic" and mode != "chat"):
            raise ValueError(f"api mode must be one of {MODES} (Anthropic: chat), got {mode!r}")
        self.mode, self.stop, self.system = mode, list(stop or []), system
        self.client = APIClient(self.endpoint, cache_dir=cache_dir, **client_options)

    @property
    def chat(self) -> bool:
        return self.mode == "chat"

    @property
    def usage(self):
        return self.client.usage

    def prompt_for(self, task: Any) -> str:
        """Completion models: the task prompt. Chat models: the user message of the project's template."""
        if not self.chat:
            return task.prompt
        return chat_messages(task)[-1]["content"]

    def completion_for(self, sample: str, task: Any) -> str:
        from ieta_jax.data import completions

        return completions.completion_from_sample(sample, task, chat=self.chat)

    def _request(self, prompt: str, n: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int | None) -> dict:
        req: dict[str, Any] = {"model": self.endpoint.model, "max_tokens": max_new_tokens,
                               "temperature": temperature, "top_p": top_p}
        if self.stop:
            req["stop_sequences" if self.endpoint.provider == "anthropic" else "stop"] = self.stop
        if self.endpoint.provider == "anthropic":
            req["messages"] = [{"role": "user", "content": prompt}]
            if self.system:
                req["system"] = self.system
            if top_p >= 1.0:
                del req["top_p"]      # Anthropic refuses temperature and top_p together on newer models
            return req
        req["n"] = n
        if seed is not None:
            req["seed"] = seed
        if self.chat:
            req["messages"] = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": prompt}]
        else:
            req["prompt"] = prompt
        return req

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int | None = None) -> list[list[str]]:
        """`n` raw samples per prompt (answers as the model wrote them; see completion_for)."""
        if self.endpoint.provider == "anthropic":
            reqs = []
            for p in prompts:
                for j in range(n):
                    r = self._request(p, 1, temperature, top_p, max_new_tokens, seed)
                    # Anthropic has no n or seed: sample j of a prompt is its own request; the metadata
                    # field keeps the n requests distinct in the cache and is sent as a user id.
                    r["metadata"] = {"user_id": f"ieta-sample-{seed}-{j}"}
                    reqs.append(r)
            out = self.client.map("messages", reqs)
            texts = ["".join(b.get("text", "") for b in o["content"] if b.get("type") == "text") for o in out]
            return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]
        kind = "chat" if self.chat else "completions"
        out = self.client.map(kind, [self._request(p, n, temperature, top_p, max_new_tokens, seed)
                                     for p in prompts])
        result = []
        for o in out:
            choices = sorted(o["choices"], key=lambda c: c["index"])
            if len(choices) != n:
                raise RuntimeError(f"{self.endpoint.base_url} returned {len(choices)} choices for n={n}")
            result.append([(c["message"]["content"] or "") if self.chat else c["text"] for c in choices])
        return result
