"""Optimizer, learning-rate schedule, gradient accumulation and the guarded update.

Master weights and optimizer moments are kept in float32 (``to_master``); the
model casts them to its compute dtype (bf16 on accelerators) inside the
forward pass, so gradients arrive in float32 too. ``guarded_update`` applies an
update only when the loss and the global gradient norm are finite: a bad batch
is skipped and counted, never written into the parameters.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "linear", "constant")
# Parameter names HF's Trainer never decays (Trainer.get_decay_parameter_names): biases and norm weights.
HF_NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine / linear decay to ``end_lr_ratio * learning_rate``."""

    learning_rate: float = 1e-5
    warmup_steps: int = 0
    total_steps: int = 1000  # optimizer updates the decay spans (warmup included)
    schedule: str = "cosine"
    end_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: Optional[float] = 1.0  # global-norm clipping; None disables it
    # Regexes over dotted parameter paths (lower case, e.g. "model.layers.0.input_layernorm.weight") that
    # weight decay skips; HF Trainer's by default (biases and norm weights); () decays every parameter.
    no_decay_patterns: tuple[str, ...] = HF_NO_DECAY_PATTERNS
    grad_accum_steps: int = 1  # micro-batches per optimizer update

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"OptimConfig.schedule={self.schedule!r}; expected one of {SCHEDULES}")
        if self.learning_rate < 0:
            raise ValueError(f"OptimConfig.learning_rate must be >= 0, got {self.learning_rate}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"OptimConfig.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise ValueError(f"OptimConfig needs warmup_steps >= 0 and total_steps >= 1, "
                             f"got {self.warmup_steps}, {self.total_steps}")


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
    """Learning rate as a function of the number of applied optimizer updates."""
    peak, end = cfg.learning_rate, cfg.learning_rate * cfg.end_lr_ratio
    decay_steps = max(cfg.total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if cfg.warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, cfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def param_name(path) -> str:
    """Dotted lower-case name of a pytree path (``model.layers.0.mlp.up_proj.kernel``)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts).lower()


def decay_mask(params: Any, no_decay_patterns: tuple[str, ...]) -> Any:
    """True for the leaves weight decay applies to: those whose name matches none of ``no_decay_patterns``."""
    compiled = [re.compile(p) for p in no_decay_patterns]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(p.search(param_name(path)) for p in compiled), params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW on the schedule (decay masked as HF's Trainer), moments in float32."""
    parts = []
    if cfg.max_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.max_grad_norm))
    mask = (lambda p: decay_mask(p, cfg.no_decay_patterns)) if cfg.no_decay_patterns else None
    parts.append(optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mu_dtype=jnp.float32, mask=mask))
    return optax.chain(*parts)


def to_master(params: Any) -> Any:
    """Cast floating-point leaves to float32 (the master copy the optimizer updates)."""
    return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def guarded_update(
    tx: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any, loss: jax.Array
) -> tuple[Any, Any, jax.Array, jax.Array]:
    """One optimizer update, skipped when the loss or gradient norm is not finite.

    Returns ``(params, opt_state, grad_norm, skipped)``; when ``skipped`` is
    true the returned params and optimizer state are the inputs, bit for bit.
    ``grad_norm`` is the norm before clipping.
    """
    grad_norm = optax.global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    safe_grads = jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grads)
    updates, new_opt_state = tx.update(safe_grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    new_params = jax.tree.map(keep, new_params, params)
    new_opt_state = jax.tree.map(keep, new_opt_state, opt_state)
    return new_params, new_opt_state, grad_norm, jnp.logical_not(ok)


def split_microbatches(batch: Any, num_micro: int) -> Any:
    """``[B, ...] -> [num_micro, B / num_micro, ...]``, micro-batch i = rows ``i::num_micro``.

    Strided rows keep each device's shard of the batch dimension local when the
    batch is sharded over devices (a plain reshape would move the sharding onto
    the micro-batch axis).
    """

    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch dimension {x.shape[0]} is not divisible by grad_accum_steps={num_micro}")
        return jnp.swapaxes(x.reshape(x.shape[0] // num_micro, num_micro, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def accumulate_gradients(
    loss_fn: Callable[[Any, Any], tuple[jax.Array, dict]], params: Any, batch: Any, num_micro: int
) -> tuple[jax.Array, dict, Any]:
    """Mean loss, mean metrics and mean gradient of ``loss_fn(params, micro_batch)`` over micro-batches.

    ``loss_fn`` returns ``(loss, metrics)``. With ``num_micro == 1`` this is one
    ``value_and_grad``; otherwise a ``lax.scan`` over micro-batches keeps peak
    activation memory at one micro-batch.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if num_micro == 1:
        (loss, metrics), grads = grad_fn(params, batch)
        return loss, metrics, grads
    micro = split_microbatches(batch, num_micro)

    def body(carry, mb):
        (loss, metrics), grads = grad_fn(params, mb)
        acc_loss, acc_metrics, acc_grads = carry
        return (acc_loss + loss, jax.tree.map(jnp.add, acc_metrics, metrics),
                jax.tree.map(jnp.add, acc_grads, grads)), None

    first = jax.tree.map(lambda x: x[0], micro)
    rest = jax.tree.map(lambda x: x[1:], micro)
    (loss, metrics), grads = grad_fn(params, first)
    (loss, metrics, grads), _ = jax.lax.scan(body, (loss, metrics, grads), rest)
    scale = 1.0 / num_micro
    return loss * scale, jax.tree.map(lambda m: m * scale, metrics), jax.tree.map(lambda g: g * scale, grads)
