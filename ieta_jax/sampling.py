"""Batched autoregressive sampling with a KV cache: a prefill plus a `lax.while_loop` decode.

`generate` runs both in one compiled program (the decode as up to `DECODE_SEGMENTS` loops, each over a cache of
the slots its steps fill). `generate_stream` runs the same two pieces (`_prefill_state`,
`_decode_until`) as separate programs, the decode a chunk of steps at a time from a carried state, so callers see
tokens while later ones are decoded; both draw step i's token with the same key, so their samples are identical.

Shapes are static for a given (batch, prompt bucket, max_new_tokens, sampling settings), so a call compiles once and
every decode step reuses the same program. Prompts are left-padded (each row's prompt ends at the same slot), so the
cache is written at one shared index per step. The weights are used where they live: on a mesh, generation runs in
the training layout with the batch sharded over ("data", "fsdp").
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Iterator, Sequence

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
    top_ids: np.ndarray | None = None          # [B, N, top_logprobs]: the most likely ids at each step, best first
    top_logprobs: np.ndarray | None = None     # their log-probabilities (same definition as `logprobs`)


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


def _argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax(x, -1)` (the first maximum, or the first NaN) as two plain reductions.

    XLA CPU emits argmax as one variadic (value, index) reduction that it does not vectorise: over [16, 2048] it
    took 1.2 ms per decode step. A max, then the smallest index that reaches it, pick the same index for less."""
    top = jnp.max(x, axis=-1, keepdims=True)
    ids = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where((x == top) | jnp.isnan(x), ids, x.shape[-1]), axis=-1)


def _order_keys(x: jax.Array) -> jax.Array:
    """uint32 keys in the order of the float32 values x (-0.0 and 0.0 the same key), for a bisection over values."""
    bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.int32)
    return jax.lax.bitcast_convert_type(jnp.where(bits < 0, ~bits, bits | jnp.int32(-2 ** 31)), jnp.uint32)


def _smallest_key(keys: jax.Array, fits) -> jax.Array:
    """Per row, the smallest uint32 t with fits(t [B, 1]) true, for a `fits` monotone in t and true at max(keys)."""
    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        ok = fits(mid[:, None])
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    lo = jnp.zeros(keys.shape[:1], jnp.uint32)
    return jax.lax.fori_loop(0, 32, halve, (lo, jnp.max(keys, axis=-1)))[1]


def _truncate(x: jax.Array, top_p, top_k) -> jax.Array:
    """x with -inf outside the top-k and the nucleus: the most likely tokens whose probability before them (in
    decreasing order, ties kept together) is below top_p; the most likely token is always kept.

    No sort: the k-th value and the nucleus cutoff are found by bisecting over the values' order keys (32 masked
    sums over [B, V]); sorting [128, 1024] and its cumulative sum (a reduce-window, quadratic in V on CPU) cost
    4x the whole rest of a smoke-sized decode step."""
    vocab = x.shape[-1]
    keys = _order_keys(x)
    top_k_active = (top_k > 0) & (top_k < vocab)

    def kth_key(_):  # the k-th largest value: the largest t with at least k values >= t
        at_least_k = lambda t: jnp.sum(keys >= t, axis=-1) >= top_k  # noqa: E731
        return _smallest_key(keys, lambda t: ~at_least_k(t + 1))

    kth = jax.lax.cond(top_k_active, kth_key, lambda _: jnp.zeros(keys.shape[:1], jnp.uint32), None)
    allowed = keys >= kth[:, None]
    probs = jax.nn.softmax(jnp.where(allowed, x, -jnp.inf), axis=-1)
    # The nucleus cutoff: the smallest value whose more likely tokens hold less than top_p of the mass.
    cut = _smallest_key(keys, lambda t: jnp.sum(jnp.where(keys > t, probs, 0.0), axis=-1) < top_p)
    return jnp.where(allowed & (keys >= cut[:, None]), x, -jnp.inf)


def sample_logits(logits: jax.Array, key: jax.Array, temperature, top_p, top_k) -> jax.Array:
    """Next token ids [B] from logits [B, V]: greedy at temperature 0, else temperature + top-k + top-p.

    The settings may be traced scalars, so one compiled sampler serves every setting; the truncation runs only
    when top-k or top-p is active, the random draw only when temperature > 0 (lax.cond). The draw is
    `jax.random.categorical`'s (argmax of logits + Gumbel noise), so a key gives the tokens categorical would.
    """
    logits = logits.astype(jnp.float32)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    active = ((top_k > 0) & (top_k < logits.shape[-1])) | (top_p < 1.0)

    def draw(x):
        x = jax.lax.cond(active, lambda y: _truncate(y, top_p, top_k), lambda y: y, x)
        return _argmax(jax.random.gumbel(key, x.shape, x.dtype) + x)

    # Greedy decoding draws no Gumbel noise (a threefry hash over [B, V] per step) and truncates nothing.
    return jax.lax.cond(temperature > 0, draw, lambda _: _argmax(logits), scaled)


def _top(logp: jax.Array, top_n: int) -> tuple[jax.Array, jax.Array]:
    """The `top_n` most likely ids [B, top_n] and their log-probabilities (empty arrays when top_n is 0)."""
    if top_n == 0:
        return jnp.zeros(logp.shape[:1] + (0,), jnp.int32), jnp.zeros(logp.shape[:1] + (0,), jnp.float32)
    values, ids = jax.lax.top_k(logp, top_n)
    return ids.astype(jnp.int32), values


def _expand_rows(x: jax.Array, num_samples: int, pad_rows: int) -> jax.Array:
    """Prompt rows -> sample rows: each row `num_samples` times in a row, then `pad_rows` copies of row 0 (the mesh's
    batch padding), laid out over the batch axes."""
    x = jnp.repeat(x, num_samples, axis=0) if num_samples > 1 else x
    if pad_rows:
        x = jnp.concatenate([x, jnp.repeat(x[:1], pad_rows, axis=0)])
    return sharding.constrain(x, ("batch",) + (None,) * (x.ndim - 1))


def _prefill_state(model, ids, mask, key_data, settings, *, max_new_tokens, eos_ids, pad_token_id, top_n,
                   num_samples, pad_rows, cache_slots=None):
    """Runs the prompts through the model and picks token 0: the decode carry (`_decode_until` continues it).

    The prefill runs once per distinct prompt [P, T], over a cache of the prompt's own length (no attention to the
    empty decode slots); its cache, last logits and position are then copied to the prompt's `num_samples` rows.
    The carry's cache has `cache_slots` slots (default: the prompt's and all `max_new_tokens` decode steps').
    carry = (step, tokens, logprobs, top_ids, top_logprobs, lengths, cache, last token, done, position).
    """
    cfg = model.config
    prompts, prompt_len = ids.shape
    cache = KVCache.init(cfg, prompts, prompt_len)
    hidden, cache = model.model(ids, mask, None, cache)
    expand = functools.partial(_expand_rows, num_samples=num_samples, pad_rows=pad_rows)
    logits = expand(model.logits_from_hidden(hidden[:, -1:])[:, 0])
    position = expand(positions_from_mask(mask)[:, -1])
    cache = cache.extend((cache_slots or prompt_len + max_new_tokens) - prompt_len)  # room for decoded keys, values
    cache = KVCache(tuple(map(expand, cache.keys)), tuple(map(expand, cache.values)), expand(cache.mask), cache.index)
    batch = logits.shape[0]
    tokens = jnp.full((batch, max_new_tokens), pad_token_id, jnp.int32)
    logprobs = jnp.zeros((batch, max_new_tokens), jnp.float32)
    top_ids = jnp.zeros((batch, max_new_tokens, top_n), jnp.int32)
    top_logprobs = jnp.zeros((batch, max_new_tokens, top_n), jnp.float32)
    done = jnp.zeros((batch,), bool)
    carry = (jnp.asarray(0, jnp.int32), tokens, logprobs, top_ids, top_logprobs, jnp.zeros((batch,), jnp.int32),
             cache, jnp.zeros((batch,), jnp.int32), done, position)
    return _record(carry, logits, key_data, settings, eos_ids=eos_ids, pad_token_id=pad_token_id, top_n=top_n)


def _record(carry, logits, key_data, settings, *, eos_ids, pad_token_id, top_n):
    """Picks the token of step `carry[0]` from `logits` and writes it (and its log-probabilities) into the carry."""
    step, tokens, logprobs, top_ids, top_logprobs, lengths, cache, _, done, position = carry
    rng = jax.random.wrap_key_data(key_data)
    temperature, top_p, top_k = settings[0], settings[1], settings[2].astype(jnp.int32)
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)
    token = sample_logits(logits, jax.random.fold_in(rng, step), temperature, top_p, top_k)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    logprob = jnp.take_along_axis(logp, token[:, None], -1)[:, 0]
    alt_ids, alt_logprobs = _top(logp, top_n)
    token = jnp.where(done, pad_token_id, token)
    logprob = jnp.where(done, 0.0, logprob)
    tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
    logprobs = jax.lax.dynamic_update_slice(logprobs, logprob[:, None], (0, step))
    if top_n:
        top_ids = jax.lax.dynamic_update_slice(top_ids, alt_ids[:, None], (0, step, 0))
        top_logprobs = jax.lax.dynamic_update_slice(top_logprobs, alt_logprobs[:, None], (0, step, 0))
    lengths = lengths + (~done).astype(jnp.int32)
    done = done | jnp.isin(token, eos)
    return step + 1, tokens, logprobs, top_ids, top_logprobs, lengths, cache, token, done, position


def _decode_until(model, carry, key_data, settings, limit, *, eos_ids, pad_token_id, top_n):
    """Decodes steps `carry[0]` .. `limit - 1` (one compiled `lax.while_loop`), stopping early once every row is done."""
    batch = carry[1].shape[0]

    def cond(carry):
        step, done = carry[0], carry[8]
        return (step < limit) & ~jnp.all(done)

    def body(carry):
        step, tokens, logprobs, top_ids, top_logprobs, lengths, cache, token, done, position = carry
        position = position + 1
        hidden, cache = model.model(token[:, None], jnp.ones((batch, 1), bool), position[:, None], cache)
        logits = model.logits_from_hidden(hidden)[:, 0]
        carry = (step, tokens, logprobs, top_ids, top_logprobs, lengths, cache, token, done, position)
        return _record(carry, logits, key_data, settings, eos_ids=eos_ids, pad_token_id=pad_token_id, top_n=top_n)

    return jax.lax.while_loop(cond, body, carry)


DECODE_SEGMENTS = 4       # at most this many decode loops in `generate`, each over the cache slots its steps use
MIN_SEGMENT_STEPS = 32    # a segment's decode steps at least (each segment compiles the decode step once more)
SLOT_MULTIPLE = 16        # a segment's cache slots are rounded up to a multiple of this


def _segments(prompt_len: int, max_new_tokens: int) -> list[tuple[int, int]]:
    """(step the segment decodes up to, exclusive; cache slots it needs) for each of `generate`'s decode segments.

    Step s (>= 1) writes its input token's keys and values at slot prompt_len + s - 1 and attends to the slots up
    to it, so a segment ending before step `end` needs prompt_len + end - 1 slots (rounded up, at most all)."""
    steps = max_new_tokens - 1  # token 0 comes from the prefill
    count = min(max(steps // MIN_SEGMENT_STEPS, 1), DECODE_SEGMENTS)
    total = prompt_len + max_new_tokens
    ends = [1 + -(-steps * (j + 1) // count) for j in range(count)]
    return [(end, min(-(-(prompt_len + end - 1) // SLOT_MULTIPLE) * SLOT_MULTIPLE, total)) for end in ends]


def _decode_segments(model, carry, key_data, settings, segments, *, eos_ids, pad_token_id, top_n):
    """`_decode_until` the last segment's end, one loop per segment, the cache grown to each segment's slots first.

    A decode step reads every layer's whole cache, and at small batch the decode is memory-bound (weights plus
    keys and values, ~20 MB per step of bench.model's tiny preset), so a step reads only the slots its segment
    fills rather than all of the generation's. The cost: the decode step is compiled once per segment."""
    for end, slots in segments:
        cache = carry[6]
        if slots > cache.mask.shape[1]:
            carry = carry[:6] + (cache.extend(slots - cache.mask.shape[1]),) + carry[7:]
        carry = _decode_until(model, carry, key_data, settings, end, eos_ids=eos_ids, pad_token_id=pad_token_id,
                              top_n=top_n)
    return carry


_STATIC = ("graphdef", "max_new_tokens", "eos_ids", "pad_token_id", "top_n", "num_samples", "pad_rows")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _generate(graphdef, state, ids, mask, key_data, settings, *, max_new_tokens, eos_ids, pad_token_id, top_n,
              num_samples, pad_rows):
    """The whole generation in one program: prefill, then the decode loops (`_decode_segments`) to `max_new_tokens`."""
    model = nnx.merge(graphdef, state)
    kw = dict(eos_ids=eos_ids, pad_token_id=pad_token_id, top_n=top_n)
    segments = _segments(ids.shape[1], max_new_tokens)
    carry = _prefill_state(model, ids, mask, key_data, settings, max_new_tokens=max_new_tokens,
                           num_samples=num_samples, pad_rows=pad_rows, cache_slots=segments[0][1], **kw)
    carry = _decode_segments(model, carry, key_data, settings, segments, **kw)
    _, tokens, logprobs, top_ids, top_logprobs, lengths = carry[:6]
    return tokens, logprobs, lengths, top_ids, top_logprobs


@functools.partial(jax.jit, static_argnames=_STATIC)
def _prefill(graphdef, state, ids, mask, key_data, settings, *, max_new_tokens, eos_ids, pad_token_id, top_n,
             num_samples, pad_rows):
    """Streaming's first program: the prompt and token 0; returns the carry `_decode_chunk` continues."""
    model = nnx.merge(graphdef, state)
    return _prefill_state(model, ids, mask, key_data, settings, max_new_tokens=max_new_tokens,
                          eos_ids=eos_ids, pad_token_id=pad_token_id, top_n=top_n, num_samples=num_samples,
                          pad_rows=pad_rows)


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnames=("carry",))
def _decode_chunk(graphdef, state, carry, key_data, settings, limit, *, max_new_tokens, eos_ids, pad_token_id,
                  top_n, num_samples, pad_rows):
    """Streaming's step program: decodes up to step `limit` (traced, so every chunk size shares one compile)."""
    model = nnx.merge(graphdef, state)
    return _decode_until(model, carry, key_data, settings, jnp.minimum(limit, max_new_tokens),
                         eos_ids=eos_ids, pad_token_id=pad_token_id, top_n=top_n)


@dataclasses.dataclass
class _Prepared:
    """`generate`'s inputs placed for the sampler programs (on the weights' mesh when there is one)."""

    graphdef: object
    state: object
    ids: np.ndarray        # host copies of the sample rows' prompts (each prompt num_samples times)
    mask: np.ndarray
    device_args: tuple     # (distinct prompt ids, their mask, key_data, settings) on device
    mesh: object
    rows: int
    static: dict

    def context(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def host(self, x) -> np.ndarray:
        return sharding.gather_to_host(x)[:self.rows]


def _prepare(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, rng, eos_token_id, prompt_mask,
             num_samples, pad_token_id, top_logprobs) -> _Prepared:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or num_samples < 1 or top_logprobs < 0:
        raise ValueError(f"invalid sampling settings temperature={temperature} top_p={top_p} top_k={top_k} "
                         f"num_samples={num_samples} top_logprobs={top_logprobs}")
    if temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng (PRNG key or int seed)")
    eos_ids = tuple(int(e) for e in np.atleast_1d(eos_token_id)) if eos_token_id is not None else ()
    if pad_token_id is None:
        pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None else (
            eos_ids[0] if eos_ids else 0)
    prompt_ids, prompt_mask = left_pad(prompt_ids, prompt_mask, pad_id=pad_token_id, multiple=PROMPT_BUCKET)
    ids, mask = np.repeat(prompt_ids, num_samples, axis=0), np.repeat(prompt_mask, num_samples, axis=0)
    rows = ids.shape[0]
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = jax.random.key(0 if rng is None else int(rng))
    typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
    key_data = np.asarray(jax.random.key_data(rng) if typed else rng)  # raw uint32: placeable on any mesh

    settings = np.array([temperature, top_p, top_k], np.float32)
    graphdef, state = nnx.split(model)
    mesh = sharding.mesh_of(state)
    # The programs take the distinct prompts and prefill each once; `pad_rows` extra sample rows (copies of row 0)
    # make the batch split over ("data", "fsdp") on a mesh, and are dropped from the results.
    pad_rows = 0 if mesh is None else -rows % int(np.prod([mesh.shape[a] for a in sharding.BATCH_AXES]))
    static = dict(max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_token_id=int(pad_token_id),
                  top_n=int(top_logprobs), num_samples=int(num_samples), pad_rows=pad_rows)
    if mesh is not None:
        ids_dev, mask_dev = sharding.shard_batch((prompt_ids, prompt_mask), mesh)
        args = (ids_dev, mask_dev, sharding.replicate(key_data, mesh), sharding.replicate(settings, mesh))
    else:
        args = (jnp.asarray(prompt_ids), jnp.asarray(prompt_mask), jnp.asarray(key_data), jnp.asarray(settings))
    return _Prepared(graphdef, state, ids, mask, args, mesh, rows, static)


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             rng: jax.Array | int | None = None, eos_token_id: int | Sequence[int] | None = None,
             prompt_mask=None, num_samples: int = 1, pad_token_id: int | None = None,
             top_logprobs: int = 0) -> GenerateOutput:
    """Samples `max_new_tokens` tokens for every prompt (and `num_samples` samples per prompt).

    prompt_ids: [B, T] array (with `prompt_mask` for padding, any side) or a list of token-id lists.
    temperature 0 is greedy; top_k 0 and top_p 1 disable those filters. `rng` is a PRNG key or int seed: the same
    key, prompts and settings give the same samples. Rows stop independently at any id in `eos_token_id`.
    top_logprobs > 0 also returns each step's `top_logprobs` most likely tokens and their log-probabilities.
    """
    p = _prepare(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, rng, eos_token_id, prompt_mask,
                 num_samples, pad_token_id, top_logprobs)
    with p.context():
        out = _generate(p.graphdef, p.state, *p.device_args, **p.static)
    tokens, logprobs, lengths, top_ids, top_lp = (p.host(x) for x in out)
    tops = (top_ids, top_lp) if top_logprobs else (None, None)
    return GenerateOutput(tokens, logprobs, lengths, p.ids, p.mask, *tops)


@dataclasses.dataclass
class GenerateChunk:
    """The tokens one streaming step added: columns `start` .. `start + tokens.shape[1] - 1` of GenerateOutput.

    lengths / done: every row's generated length so far (EOS included) and whether it has ended (EOS); after the
    last chunk `lengths` equals `generate`'s. top_ids / top_logprobs: [B, k, top_logprobs], None without them.
    """

    start: int
    tokens: np.ndarray
    logprobs: np.ndarray
    lengths: np.ndarray
    done: np.ndarray
    top_ids: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None


def generate_stream(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                    top_k: int = 0, rng: jax.Array | int | None = None,
                    eos_token_id: int | Sequence[int] | None = None, prompt_mask=None, num_samples: int = 1,
                    pad_token_id: int | None = None, top_logprobs: int = 0,
                    chunk_tokens: int = 8) -> Iterator[GenerateChunk]:
    """`generate` (same arguments, same samples for the same rng) as chunks of at most `chunk_tokens` new tokens.

    The first chunk is the prompt's first token alone (the earliest a client can see anything); each later one
    is one `_decode_chunk` call, made only when the caller asks for the next chunk. Stops once every row is done.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    p = _prepare(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, rng, eos_token_id, prompt_mask,
                 num_samples, pad_token_id, top_logprobs)
    start = 0
    with p.context():
        carry = _prefill(p.graphdef, p.state, *p.device_args, **p.static)
    while True:
        step, tokens, logprobs, top_ids, top_lp, lengths = (p.host(x) if i else int(x)
                                                             for i, x in enumerate(carry[:6]))
        done = p.host(carry[8])
        cols = slice(start, step)
        yield GenerateChunk(start, tokens[:, cols], logprobs[:, cols], lengths, done,
                            top_ids[:, cols] if top_logprobs else None, top_lp[:, cols] if top_logprobs else None)
        start = step
        if step >= max_new_tokens or done.all():
            return
        with p.context():
            carry = _decode_chunk(p.graphdef, p.state, carry, p.device_args[2], p.device_args[3],
                                  np.int32(step + chunk_tokens), **p.static)


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
