"""What the experiment samples from: the :class:`Policy` interface, and :class:`LocalPolicy` for local checkpoints.

The rollout and evaluation stages only ask a policy for a task's prompt text and for ``n`` samples per prompt,
so a policy behind an API can be plugged in by implementing these two methods. Training needs the weights and
the tokenizer, which only a :class:`LocalPolicy` has; each method takes one and returns the trained one.
:class:`EndpointPolicy` is the policy behind an ``openai://`` / ``anthropic://`` endpoint (``config.policy``),
for the baseline evaluation.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Protocol

from ieta_jax import distributed, workdir as workdir_lib
from ieta_jax.data import Task


PROMPT_STEP = 64  # LocalPolicy pads prompts to a multiple of this many tokens


class Policy(Protocol):
    def prompt(self, task: Task) -> str:
        """The text the policy continues for ``task`` (chat models: the rendered conversation)."""

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int) -> list[list[str]]:
        """``n`` sampled continuations of each prompt, as text; the same seed gives the same samples."""


@dataclasses.dataclass
class LocalPolicy:
    """A JAX model on the mesh plus its tokenizer. ``generate`` is collective: every process calls it."""

    model: Any                 # models.CausalLM
    tokenizer: Any
    max_prompt_len: int        # prompts are left-truncated to this many tokens
    top_k: int = 0
    chat: bool = False
    _width: dict = dataclasses.field(default_factory=dict, repr=False)  # n -> most prompts in one generate() call

    def prompt(self, task: Task) -> str:
        from ieta_jax.data import completions

        return completions.format_prompt(task, self.tokenizer, chat=self.chat)

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"][-self.max_prompt_len:]

    def completion_ids(self, completion: str, max_new_tokens: int) -> list[int]:
        """A completion as the trainers score it: at most ``max_new_tokens`` tokens, EOS last."""
        ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"][: max_new_tokens - 1]
        return ids + [self.tokenizer.eos_token_id]

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int) -> list[list[str]]:
        import jax

        from ieta_jax import sampling

        ids = [self.prompt_ids(p) for p in prompts]
        # Prompts per call padded to a power of two, capped at the widest call seen for this n: few compiled
        # shapes, full batches unpadded, and a small call (an RL step's rollout, a short last batch) does not pay
        # for the widest batch (sampling cost grows with the rows).
        widest = self._width[n] = max(self._width.get(n, 0), len(ids))
        width = min(1 << (len(ids) - 1).bit_length(), widest)
        ids += [ids[-1]] * (width - len(ids))
        # Prompt lengths in steps of PROMPT_STEP (at most the longest allowed prompt): each new (rows, length)
        # shape costs a compilation (~3.5 CPU-s for the tiny model, as much as sampling 128 rows), padding a
        # call to the next step far less.
        longest = max(len(x) for x in ids)
        cap = -(-self.max_prompt_len // sampling.PROMPT_BUCKET) * sampling.PROMPT_BUCKET
        ids, mask = sampling.left_pad(ids, pad_id=self.tokenizer.pad_token_id,
                                      multiple=min(-(-longest // PROMPT_STEP) * PROMPT_STEP, cap))
        out = sampling.generate(self.model, ids, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, top_k=self.top_k, rng=jax.random.key(seed),
                                eos_token_id=self.tokenizer.eos_token_id, num_samples=n, prompt_mask=mask,
                                pad_token_id=self.tokenizer.pad_token_id)
        texts = sampling.decode_text(self.tokenizer, out)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def with_model(self, model) -> "LocalPolicy":
        return dataclasses.replace(self, model=model)


class EndpointPolicy:
    """``api.APIPolicy`` as the experiment's :class:`Policy`; process 0 sends the requests, every process gets
    the samples (``distributed.on_primary``), so only process 0 needs the API key."""

    def __init__(self, config, workdir: str):
        from ieta_jax import api

        self.chat = config.prompt_format == "chat"
        self.api = None
        if distributed.is_primary():
            self.api = api.APIPolicy(config.policy, config.policy_model_name,
                                     mode="chat" if self.chat else "completions",
                                     cache_dir=os.path.join(workdir, "api_cache", "policy"),
                                     max_concurrency=config.api.max_concurrency)

    def prompt(self, task: Task) -> str:
        from ieta_jax.api.policy import chat_messages

        # The same text APIPolicy.prompt_for gives, without needing the client (processes other than 0).
        return chat_messages(task)[-1]["content"] if self.chat else task.prompt

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int) -> list[list[str]]:
        return distributed.on_primary(lambda: self.api.generate(prompts, n, temperature, top_p, max_new_tokens, seed))

    def usage(self) -> dict | None:
        """Requests and tokens of this invocation (``api.Usage``); None on processes other than 0."""
        return None if self.api is None else self.api.usage.to_dict()


def load_tokenizer(model_dir: str):
    from ieta_jax import models

    tokenizer = models.load_tokenizer(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, config, mesh, model_class=None):
    """A checkpoint on the mesh in the config's dtypes (``model_class=models.RewardModel`` for a reward model)."""
    from ieta_jax import models

    kw = {} if model_class is None else {"model_class": model_class}
    return models.from_pretrained(path, dtype=config.dtype, mesh=mesh, param_dtype=config.param_dtype,
                                  seed=config.seed, **kw)


def save_model(model, out_dir: str, tokenizer=None) -> None:
    """A HF checkpoint (transformers loads it), put in place whole; every process calls it (gathers)."""
    from ieta_jax import models

    tmp = out_dir + ".tmp"
    if distributed.is_primary() and os.path.exists(tmp):
        import shutil

        shutil.rmtree(tmp)
    models.save_pretrained(model, tmp, tokenizer=tokenizer)
    if distributed.is_primary():
        workdir_lib.replace_dir(tmp, out_dir)
    distributed.barrier(f"save_model:{out_dir}")  # no process loads it before it is in place
