"""Batched autoregressive sampling with a KV cache: one jitted prefill plus a `lax.while_loop` decode.

Shapes are static for a given (batch, prompt bucket, max_new_tokens, sampling settings), so a call compiles once and
every decode step reuses the same program. Prompts are left-padded (each row's prompt ends at the same slot), so the
cache is written at one shared index per step. The weights are used where they live: on a mesh, generation runs in
the training layout with the batch sharded over ("data", "fsdp").
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import sharding
from ieta_jax.models.llama import KVCache, positions_from_mask

PROMPT_BUCKET = 16  # prompt lengths are rounded up to a multiple of this to bound recompilation


@dataclasses.dataclass
class GenerateOutput:
    """Host (numpy) results; row i*num_samples + j is sample j of prompt i.

    tokens: [B, N] new tokens, `pad_token_id` after a row's EOS. logprobs: [B, N] log-probability of each sampled
    token under the model (temperature 1, no top-k/top-p truncation; 0 after EOS), the quantity a training forward
    recomputes. lengths: [B] number of generated tokens including the EOS token. prompt_ids / prompt_mask: the
    left-padded prompts the rows were generated from.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    lengths: np.ndarray
    prompt_ids: np.ndarray
    prompt_mask: np.ndarray


def left_pad(prompts, mask=None, pad_id: int = 0, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads a list of token lists, or re-pads a [B, T] array with `mask` (any padding side) to the left."""
    if mask is not None or not isinstance(prompts, (list, tuple)):
        ids = np.asarray(sharding.gather_to_host(prompts) if isinstance(prompts, jax.Array) else prompts)
        if ids.ndim != 2:
            raise ValueError(f"prompt_ids must be [batch, length], got shape {ids.shape}")
        m = np.ones(ids.shape, bool) if mask is None else np.asarray(
            sharding.gather_to_host(mask) if isinstance(mask, jax.Array) else mask).astype(bool)
        rows = [row[keep] for row, keep in zip(ids, m)]
    else:
        rows = [np.asarray(r, np.int64) for r in prompts]
    if any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    length = max(len(r) for r in rows)
    length = -(-length // multiple) * multiple
    out_ids = np.full((len(rows), length), pad_id, np.int32)
    out_mask = np.zeros((len(rows), length), bool)
    for i, r in enumerate(rows):
        out_ids[i, length - len(r):] = r
        out_mask[i, length - len(r):] = True
    return out_ids, out_mask


def sample_logits(logits: jax.Array, key: jax.Array, temperature, top_p, top_k) -> jax.Array:
    """Next token ids [B] from logits [B, V]: greedy at temperature 0, else temperature + top-k + top-p.

    The settings may be traced scalars, so one compiled sampler serves every setting; the sort that top-k/top-p
    need runs only when one of them is active, the random draw only when temperature > 0 (lax.cond).
    """
    logits = logits.astype(jnp.float32)
    scaled = logits / jnp.maximum(temperature, 1e-6)

    def truncate(x):
        sorted_x = jnp.sort(x, axis=-1)[:, ::-1]
        vocab = x.shape[-1]
        k = jnp.where((top_k > 0) & (top_k < vocab), top_k, vocab)
        kth = jax.lax.dynamic_index_in_dim(sorted_x, k - 1, axis=-1, keepdims=True)
        sorted_x = jnp.where(sorted_x < kth, -jnp.inf, sorted_x)
        probs = jax.nn.softmax(sorted_x, axis=-1)
        keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p  # the most likely token is always kept
        cutoff = jnp.min(jnp.where(keep, sorted_x, jnp.inf), axis=-1, keepdims=True)
        return jnp.where(x < jnp.maximum(cutoff, kth), -jnp.inf, x)

    active = ((top_k > 0) & (top_k < logits.shape[-1])) | (top_p < 1.0)

    def draw(x):
        return jax.random.categorical(key, jax.lax.cond(active, truncate, lambda y: y, x), axis=-1).astype(jnp.int32)

    # Greedy decoding draws no Gumbel noise (a threefry hash over [B, V] per step) and sorts nothing.
    return jax.lax.cond(temperature > 0, draw, lambda _: jnp.argmax(logits, axis=-1).astype(jnp.int32), scaled)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "eos_ids", "pad_token_id"))
def _generate(graphdef, state, ids, mask, key_data, settings, *, max_new_tokens, eos_ids, pad_token_id):
    model = nnx.merge(graphdef, state)
    rng = jax.random.wrap_key_data(key_data)
    temperature, top_p, top_k = settings[0], settings[1], settings[2].astype(jnp.int32)
    cfg = model.config
    batch, prompt_len = ids.shape
    cache = KVCache.init(cfg, batch, prompt_len + max_new_tokens)
    cache = cache._replace(keys=tuple(sharding.constrain(k, ("batch", None, None, None)) for k in cache.keys),
                           values=tuple(sharding.constrain(v, ("batch", None, None, None)) for v in cache.values))
    hidden, cache = model.model(ids, mask, None, cache)
    logits = model.logits_from_hidden(hidden[:, -1:])[:, 0]
    position = positions_from_mask(mask)[:, -1]
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)

    def pick(step, logits, done):
        token = sample_logits(logits, jax.random.fold_in(rng, step), temperature, top_p, top_k)
        logprob = jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32), -1), token[:, None], -1)[:, 0]
        token = jnp.where(done, pad_token_id, token)
        logprob = jnp.where(done, 0.0, logprob)
        return token, logprob, done | jnp.isin(token, eos)

    tokens = jnp.full((batch, max_new_tokens), pad_token_id, jnp.int32)
    logprobs = jnp.zeros((batch, max_new_tokens), jnp.float32)
    done = jnp.zeros((batch,), bool)
    token, logprob, done_next = pick(0, logits, done)
    lengths = jnp.ones((batch,), jnp.int32)
    tokens, logprobs = tokens.at[:, 0].set(token), logprobs.at[:, 0].set(logprob)

    def cond(carry):
        step, _, _, _, _, _, done, _ = carry
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        step, tokens, logprobs, lengths, cache, token, done, position = carry
        position = position + 1
        hidden, cache = model.model(token[:, None], jnp.ones((batch, 1), bool), position[:, None], cache)
        logits = model.logits_from_hidden(hidden)[:, 0]
        token, logprob, new_done = pick(step, logits, done)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
        logprobs = jax.lax.dynamic_update_slice(logprobs, logprob[:, None], (0, step))
        lengths = lengths + (~done).astype(jnp.int32)
        return step + 1, tokens, logprobs, lengths, cache, token, new_done, position

    carry = (jnp.asarray(1, jnp.int32), tokens, logprobs, lengths, cache, token, done_next, position)
    _, tokens, logprobs, lengths, _, _, _, _ = jax.lax.while_loop(cond, body, carry)
    return tokens, logprobs, lengths


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             rng: jax.Array | int | None = None, eos_token_id: int | Sequence[int] | None = None,
             prompt_mask=None, num_samples: int = 1, pad_token_id: int | None = None) -> GenerateOutput:
    """Samples `max_new_tokens` tokens for every prompt (and `num_samples` samples per prompt).

    prompt_ids: [B, T] array (with `prompt_mask` for padding, any side) or a list of token-id lists.
    temperature 0 is greedy; top_k 0 and top_p 1 disable those filters. `rng` is a PRNG key or int seed: the same
    key, prompts and settings give the same samples. Rows stop independently at any id in `eos_token_id`.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or num_samples < 1:
        raise ValueError(f"invalid sampling settings temperature={temperature} top_p={top_p} top_k={top_k} "
                         f"num_samples={num_samples}")
    if temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng (PRNG key or int seed)")
    eos_ids = tuple(int(e) for e in np.atleast_1d(eos_token_id)) if eos_token_id is not None else ()
    if pad_token_id is None:
        pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None else (
            eos_ids[0] if eos_ids else 0)
    ids, mask = left_pad(prompt_ids, prompt_mask, pad_id=pad_token_id, multiple=PROMPT_BUCKET)
    ids, mask = np.repeat(ids, num_samples, axis=0), np.repeat(mask, num_samples, axis=0)
    rows = ids.shape[0]
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = jax.random.key(0 if rng is None else int(rng))
    typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
    key_data = np.asarray(jax.random.key_data(rng) if typed else rng)  # raw uint32: placeable on any mesh

    settings = np.array([temperature, top_p, top_k], np.float32)
    graphdef, state = nnx.split(model)
    mesh = sharding.mesh_of(state)
    if mesh is not None:
        shards = int(np.prod([mesh.shape[a] for a in sharding.BATCH_AXES]))
        pad_rows = -rows % shards  # pad the batch so it splits over ("data","fsdp"); extra rows are dropped
        ids = np.concatenate([ids, np.repeat(ids[:1], pad_rows, 0)])
        mask = np.concatenate([mask, np.repeat(mask[:1], pad_rows, 0)])
        ids_dev, mask_dev = sharding.shard_batch((ids, mask), mesh)
        key_data = sharding.replicate(key_data, mesh)
        with jax.set_mesh(mesh):
            out = _generate(graphdef, state, ids_dev, mask_dev, key_data, sharding.replicate(settings, mesh),
                            max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_token_id=int(pad_token_id))
    else:
        out = _generate(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(key_data),
                        jnp.asarray(settings), max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                        pad_token_id=int(pad_token_id))
    tokens, logprobs, lengths = (sharding.gather_to_host(x)[:rows] for x in out)
    return GenerateOutput(tokens, logprobs, lengths, ids[:rows], mask[:rows])


def decode_text(tokenizer, out: GenerateOutput, stop: Sequence[str] | None = None,
                skip_special_tokens: bool = True) -> list[str]:
    """Decodes each row's generated tokens (up to its length) and cuts the text at the first stop string."""
    texts = []
    for row, n in zip(out.tokens, out.lengths):
        text = tokenizer.decode(row[:n].tolist(), skip_special_tokens=skip_special_tokens)
        for s in stop or ():
            cut = text.find(s)
            if cut != -1:
                text = text[:cut]
        texts.append(text)
    return texts
