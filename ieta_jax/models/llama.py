"""Flax NNX decoder-only transformer of the Llama family (Llama, Qwen2, Mistral), plus a scalar reward model.

Module and attribute names mirror the Hugging Face state dict (`model.layers.0.self_attn.q_proj` ...) so that the
checkpoint mapping in `checkpoint.py` is mechanical: a `kernel` is the transposed HF `weight`, everything else is
stored as HF stores it. Every parameter carries logical axis names that `ieta_jax.sharding.LOGICAL_RULES` maps to
mesh axes.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import sharding
from ieta_jax.models.config import ModelConfig

_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


class KVCache(NamedTuple):
    """Per-layer keys [batch, kv_heads, head_dim, max_len] and values [batch, kv_heads, max_len, head_dim]; `mask`
    [batch, max_len] marks filled, non-pad slots; `index` is the next slot to write (the same for all rows: prompts
    are left-padded).

    Batch and head leading, the layout the attention matmuls read (slot-major, XLA copied the whole cache into that
    layout in every decode step). Keys are dim-major so that a decode step's scores (a sum over head_dim) and its
    output (a sum over slots) both reduce over a non-minor dim, which XLA CPU vectorises along the minor one
    (slots, resp. head_dim); a sum over a minor head_dim of 32 was the largest cost of a decode step."""

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    mask: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int) -> "KVCache":
        n_kv, d, layers = cfg.num_key_value_heads, cfg.head_dim, cfg.num_hidden_layers
        return cls(tuple(jnp.zeros((batch, n_kv, d, max_len), cfg.dtype) for _ in range(layers)),
                   tuple(jnp.zeros((batch, n_kv, max_len, d), cfg.dtype) for _ in range(layers)),
                   jnp.zeros((batch, max_len), bool), jnp.zeros((), jnp.int32))

    def extend(self, slots: int) -> "KVCache":
        """The same cache with `slots` more empty slots at the end."""
        pad = lambda x, axis: jnp.pad(x, [(0, slots if i == axis else 0) for i in range(x.ndim)])  # noqa: E731
        return KVCache(tuple(pad(k, 3) for k in self.keys), tuple(pad(v, 2) for v in self.values),
                       pad(self.mask, 1), self.index)


def _param(rngs: nnx.Rngs, cfg: ModelConfig, shape, names, init="normal") -> nnx.Param:
    if init == "normal":
        value = cfg.initializer_range * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return nnx.Param(value.astype(cfg.param_dtype), sharding_names=tuple(names), eager_sharding=False)


def matmul_tokens(x: jax.Array, kernel: jax.Array, **dot_kwargs) -> jax.Array:
    """``x [..., in] @ kernel [in, out]`` as one 2-D matmul over the flattened token dims.

    On XLA CPU a dot contracting over several leading dims (the weight gradient of a [B, T, in] input) is emitted
    with a transposed copy of its [B, T, out] operand per matmul; over [B*T, in] it is a plain GEMM with none
    (the MLP block's forward+backward ran 1.5x faster)."""
    y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel, **dot_kwargs)
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (the transpose of the HF weight)."""

    def __init__(self, cfg: ModelConfig, d_in: int, d_out: int, names: tuple[str, str], bias: bool,
                 rngs: nnx.Rngs):
        self.dtype = cfg.dtype
        self.kernel = _param(rngs, cfg, (d_in, d_out), names)
        self.bias = _param(rngs, cfg, (d_out,), names[1:], init="zeros") if bias else None

    def __call__(self, x):
        y = matmul_tokens(x, self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


def _fused(x, linears):
    """The outputs of several Linears of the same input from one matmul over their concatenated kernels."""
    kernel = jnp.concatenate([l.kernel[...].astype(l.dtype) for l in linears], axis=1)
    y = jnp.dot(x, kernel)
    if linears[0].bias is not None:
        y = y + jnp.concatenate([l.bias[...].astype(l.dtype) for l in linears])
    sizes = [l.kernel.shape[1] for l in linears]
    return jnp.split(y, np.cumsum(sizes)[:-1], axis=-1)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.eps = cfg.rms_norm_eps
        self.weight = _param(rngs, cfg, (cfg.hidden_size,), ("norm",), init="ones")

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * normed.astype(x.dtype)


def _rotate(x, cos, sin):
    """HF rotate-half rotary embedding; x [B,T,H,D], cos/sin [B,T,D]."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def fused_attention(q, k, v, mask_bias, implementation: str):
    """`jax.nn.dot_product_attention` over q [B, T, N, D] and k, v [B, S, K, D] with the einsum path's mask (query
    head n reads kv head n // (N / K) in both). The mask goes in as a boolean, which the implementation turns into
    its own large negative bias (cuDNN needs one finite in the compute dtype)."""
    allowed = (mask_bias > _MASK_VALUE / 2)[:, None]  # [B, 1, T, S]
    return jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=allowed,
                                        implementation=implementation)


def cudnn_attention(q, k, v, mask_bias, required: bool):
    """cuDNN's flash attention (`ModelConfig.attention`), or None where it does not apply and is not `required`:
    not a GPU backend, not bf16/fp16, or a shape cuDNN's kernels do not cover (they raise while tracing)."""
    if not required and (jax.default_backend() != "gpu" or q.dtype not in (jnp.bfloat16, jnp.float16)):
        return None
    try:
        return fused_attention(q, k, v, mask_bias, "cudnn")
    except NotImplementedError:
        if required:
            raise
        return None


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        q, kv = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
        self.q_proj = Linear(cfg, h, q, ("embed", "q_heads"), cfg.attention_bias, rngs)
        self.k_proj = Linear(cfg, h, kv, ("embed", "kv_heads"), cfg.attention_bias, rngs)
        self.v_proj = Linear(cfg, h, kv, ("embed", "kv_heads"), cfg.attention_bias, rngs)
        self.o_proj = Linear(cfg, q, h, ("q_heads", "embed"), False, rngs)

    def __call__(self, x, cos, sin, mask_bias, cache_kv=None, cache_index=None):
        """`mask_bias` [B, T, S]: 0 where query t may attend to key slot s, a large negative value elsewhere."""
        cfg = self.cfg
        b, t, _ = x.shape
        n_kv, d = cfg.num_key_value_heads, cfg.head_dim
        groups = cfg.num_attention_heads // n_kv
        if t == 1:
            q, k, v = _fused(x, (self.q_proj, self.k_proj, self.v_proj))
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = _rotate(q.reshape(b, t, cfg.num_attention_heads, d), cos, sin)
        k = _rotate(k.reshape(b, t, n_kv, d), cos, sin)
        if cache_kv is None and cfg.attention != "xla":
            out = cudnn_attention(q, k, v.reshape(b, t, n_kv, d), mask_bias, required=cfg.attention == "cudnn")
            if out is not None:
                return self.o_proj(out.reshape(b, t, cfg.num_attention_heads * d)), None
        v = v.reshape(b, t, n_kv, d).transpose(0, 2, 1, 3)  # head-major [B, kv, T, D]
        new_kv = None
        if cache_kv is None:
            k, keys = k.transpose(0, 2, 1, 3), "bksd"  # [B, kv, T, D]
        else:  # the cache's keys are dim-major [B, kv, D, S]
            k = jax.lax.dynamic_update_slice(cache_kv[0], k.transpose(0, 2, 3, 1).astype(cache_kv[0].dtype),
                                             (0, 0, 0, cache_index))
            v = jax.lax.dynamic_update_slice(cache_kv[1], v.astype(cache_kv[1].dtype), (0, 0, cache_index, 0))
            new_kv, keys = (k, v), "bkds"
        q = q.reshape(b, t, n_kv, groups, d).transpose(0, 2, 3, 1, 4)  # [B, kv, G, T, D]
        if t == 1 and cache_kv is not None:
            # A decode step: multiply-reduces, which XLA fuses with the softmax, cost less on CPU than the many tiny
            # GEMMs (one per batch row and head) the einsums become for a single query. Same precision as the
            # einsums: inputs in x.dtype, accumulated in float32.
            q32 = q[:, :, :, 0, :, None].astype(jnp.float32)  # [B, kv, G, D, 1]
            scores = jnp.sum(q32 * k[:, :, None].astype(jnp.float32), axis=-2)[:, :, :, None]
            probs = jax.nn.softmax(scores * (d ** -0.5) + mask_bias[:, None, None], axis=-1).astype(x.dtype)
            v32 = v[:, :, None].astype(x.dtype).astype(jnp.float32)
            out = jnp.sum(probs[:, :, :, 0, :, None].astype(jnp.float32) * v32, axis=-2)[:, :, :, None]
            out = out.astype(x.dtype)
        else:
            # Both matmuls in canonical form (batch dims leading, contraction over the lhs's minor dim), so XLA runs
            # them as batched GEMMs without relayouting their operands.
            scores = jnp.einsum(f"bkgtd,{keys}->bkgts", q, k, preferred_element_type=jnp.float32)
            probs = jax.nn.softmax(scores * (d ** -0.5) + mask_bias[:, None, None], axis=-1).astype(x.dtype)
            out = jnp.einsum("bkgts,bksd->bkgtd", probs, v.astype(x.dtype))
        out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, cfg.num_attention_heads * d)
        return self.o_proj(out), new_kv


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Linear(cfg, h, m, ("embed", "mlp"), cfg.mlp_bias, rngs)
        self.up_proj = Linear(cfg, h, m, ("embed", "mlp"), cfg.mlp_bias, rngs)
        self.down_proj = Linear(cfg, m, h, ("mlp", "embed"), cfg.mlp_bias, rngs)

    def __call__(self, x):
        gate, up = _fused(x, (self.gate_proj, self.up_proj)) if x.shape[1] == 1 else (self.gate_proj(x), self.up_proj(x))
        return self.down_proj(jax.nn.silu(gate) * up)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg, rngs)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = RMSNorm(cfg, rngs)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, cos, sin, mask_bias, cache_kv=None, cache_index=None):
        attn, new_kv = self.self_attn(self.input_layernorm(x), cos, sin, mask_bias, cache_kv, cache_index)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return sharding.constrain(x, ("batch", "seq", None)), new_kv


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
    """Position of each token = number of real tokens before it (left padding works); pads get 0."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class Backbone(nnx.Module):
    """Embedding, decoder layers and final norm: HF's `LlamaModel` (`model.*` in the state dict)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = Embedding(cfg, rngs)
        self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg, rngs)

    def __call__(self, input_ids, attention_mask=None, positions=None, cache: KVCache | None = None):
        cfg = self.cfg
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), bool)
        attention_mask = attention_mask.astype(bool)
        if positions is None:
            positions = positions_from_mask(attention_mask)
        # Rotary tables, shared by all layers, taken over half the head dim before the halves are joined: cos and sin
        # of the joined [B, T, head_dim] angles were fused into every rotation that reads them and recomputed there
        # (20 of each in a 4-layer train step on CPU); now XLA computes each once.
        inv_freq = cfg.rope_inv_freq(jnp.max(positions) + 1)
        freqs = positions.astype(jnp.float32)[..., None] * inv_freq
        cos, sin = (jnp.concatenate([f, f], axis=-1).astype(cfg.dtype) for f in (jnp.cos(freqs), jnp.sin(freqs)))
        # Attention masks: key slot valid, causal by slot, optionally a sliding window (by slot, as HF does).
        if cache is None:
            key_valid, q_slot, k_slot, index = attention_mask, jnp.arange(t), jnp.arange(t), None
        else:
            index = cache.index
            key_valid = jax.lax.dynamic_update_slice(cache.mask, attention_mask, (0, index))
            q_slot, k_slot = index + jnp.arange(t), jnp.arange(cache.mask.shape[1])
        causal = k_slot[None, :] <= q_slot[:, None]
        allowed_full = key_valid[:, None, :] & causal[None]
        windows = {cfg.layer_window(i) for i in range(cfg.num_hidden_layers)} - {None}
        allowed = {None: allowed_full}
        allowed.update({w: allowed_full & ((q_slot[:, None] - k_slot[None, :]) < w)[None] for w in windows})
        # Additive float32 biases, built once for all layers: adding one costs the same as masking with a select in
        # the forward, and its gradient is the identity (a select's is another select per layer).
        biases = {w: jnp.where(a, 0.0, _MASK_VALUE).astype(jnp.float32) for w, a in allowed.items()}

        x = sharding.constrain(self.embed_tokens(input_ids), ("batch", "seq", None))
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            window = cfg.layer_window(i)
            cache_kv = None if cache is None else (cache.keys[i], cache.values[i])
            x, kv = layer(x, cos, sin, biases[window], cache_kv, index)
            if kv is not None:
                new_keys.append(kv[0])
                new_values.append(kv[1])
        x = self.norm(x)
        new_cache = None if cache is None else KVCache(tuple(new_keys), tuple(new_values), key_valid, index + t)
        return x, new_cache


class Embedding(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.dtype = cfg.dtype
        self.weight = _param(rngs, cfg, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"))

    def __call__(self, ids):
        # Gather from the table all-gathered over its embed dim (as FSDP does for every weight at use), so the
        # lookup's output can be batch-sharded without a full rematerialisation.
        table = sharding.constrain(self.weight[...], ("vocab", None))
        return jnp.take(table, ids, axis=0).astype(self.dtype)

    def attend(self, x):
        """Tied output projection: x @ weight.T, accumulated in float32."""
        return matmul_tokens(x, self.weight[...].astype(self.dtype).T, preferred_element_type=jnp.float32)


class CausalLM(nnx.Module):
    """Llama-family causal LM. `model(ids, mask)` -> float32 logits [B, T, V]."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.model = Backbone(cfg, rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = Linear(cfg, cfg.hidden_size, cfg.vocab_size, ("embed", "vocab"), False, rngs)
        else:
            self.lm_head = None

    def logits_from_hidden(self, hidden):
        if self.lm_head is None:
            return self.model.embed_tokens.attend(hidden)
        return matmul_tokens(hidden, self.lm_head.kernel[...].astype(hidden.dtype),
                             preferred_element_type=jnp.float32)

    def __call__(self, input_ids, attention_mask=None, *, positions=None, cache: KVCache | None = None):
        """Logits [B, T, V] (float32); with `cache`, returns (logits, updated cache)."""
        hidden, new_cache = self.model(input_ids, attention_mask, positions, cache)
        logits = self.logits_from_hidden(hidden)
        return logits if cache is None else (logits, new_cache)


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last non-pad token of each row (works for left and right padding)."""
    t = attention_mask.shape[-1]
    return t - 1 - jnp.argmax(jnp.flip(attention_mask.astype(jnp.int32), axis=-1), axis=-1)


def score_index(input_ids: jax.Array, attention_mask: jax.Array, pad_token_id: int | None) -> jax.Array:
    """Where a reward model reads its score, by HF `*ForSequenceClassification`'s rule.

    With a pad id: the rightmost token that is not the pad token (so with pad == EOS a completion's final EOS is
    skipped, exactly as transformers and TRL score it). Without one: the last token the attention mask covers.
    """
    if pad_token_id is None:
        return last_token_index(attention_mask)
    non_pad = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.argmax(jnp.arange(input_ids.shape[-1], dtype=jnp.int32) * non_pad, axis=-1)


class RewardModel(nnx.Module):
    """Backbone plus a scalar head read where HF `*ForSequenceClassification` (1 label) reads it (`score_index`)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.model = Backbone(cfg, rngs)
        self.score = Linear(cfg, cfg.hidden_size, 1, ("embed", "classes"), False, rngs)

    def __call__(self, input_ids, attention_mask=None, *, positions=None):
        """Rewards [B] (float32)."""
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, bool)
        hidden, _ = self.model(input_ids, attention_mask, positions)
        idx = score_index(input_ids, attention_mask, self.config.pad_token_id)
        last = jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0]
        return jnp.dot(last, self.score.kernel[...].astype(last.dtype),
                       preferred_element_type=jnp.float32)[:, 0]
