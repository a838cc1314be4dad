"""Loss functions for preference and reinforcement post-training.

Pure functions over arrays: no models, no optimizers. The trainers in
``ieta_jax.trainers`` compute sequence log-probabilities and hand them here, so
each objective can be checked against an independent formula in isolation.

Metric names follow TRL (``rewards/chosen``, ``clip_ratio``, ...) so TensorBoard
dashboards built for TRL runs read ours unchanged.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


def dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: Optional[jax.Array] = None,
    rejected_lengths: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Direct Preference Optimisation loss, averaged over the batch.

    All log-prob inputs are ``[batch]`` summed log-probabilities of the
    completion tokens. With the implicit reward margin

        h = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)

    and ``s`` the logistic sigmoid, ``e`` = ``label_smoothing``:

    - ``sigmoid`` (DPO, Rafailov et al. 2023; cDPO when e > 0):
      ``-(1 - e) log s(beta h) - e log s(-beta h)``. TRL 1.16's ``DPOTrainer``
      ignores ``label_smoothing`` for ``sigmoid``: with e > 0 the two differ.
    - ``ipo`` (Azar et al. 2023): ``(h' - 1 / (2 beta))^2`` with ``h'`` built
      from per-token averages of each log-ratio (divided by ``chosen_lengths``
      / ``rejected_lengths``, the completion token counts, as TRL does; when
      they are not given the inputs are taken as already averaged).
    - ``hinge`` (SLiC, Zhao et al. 2023): ``max(0, 1 - beta h)``
    - ``robust`` (rDPO, Chowdhury et al. 2024):
      ``(-(1 - e) log s(beta h) + e log s(-beta h)) / (1 - 2 e)``

    Label smoothing ``e`` is the assumed probability that a preference label is
    flipped (noisy annotator / noisy execution verdict). ``sigmoid`` then fits
    the smoothed target ("conservative DPO": the margin stops growing once
    ``s(beta h) = 1 - e``); ``robust`` instead builds an unbiased estimate of
    the clean-label loss, which needs ``e < 0.5``. ``ipo`` and ``hinge`` ignore
    it.

    Metrics (TRL names, batch means, always from the summed log-probs, IPO
    included): ``rewards/chosen`` and ``rewards/rejected`` are the implicit
    rewards ``beta * (policy - ref)``, ``rewards/accuracies`` the fraction with
    chosen reward > rejected reward, ``rewards/margins`` their difference,
    ``logps/chosen`` / ``logps/rejected`` the policy log-probs.
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSS_TYPES}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")

    pc = policy_chosen_logps.astype(jnp.float32)
    pr = policy_rejected_logps.astype(jnp.float32)
    rc = ref_chosen_logps.astype(jnp.float32)
    rr = ref_rejected_logps.astype(jnp.float32)
    h = (pc - pr) - (rc - rr)
    e = label_smoothing

    if loss_type == "sigmoid":
        losses = -(1.0 - e) * jax.nn.log_sigmoid(beta * h) - e * jax.nn.log_sigmoid(-beta * h)
    elif loss_type == "ipo":
        if chosen_lengths is not None and rejected_lengths is not None:
            nc = jnp.maximum(chosen_lengths.astype(jnp.float32), 1.0)
            nr = jnp.maximum(rejected_lengths.astype(jnp.float32), 1.0)
            h = (pc - rc) / nc - (pr - rr) / nr
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "hinge":
        losses = jax.nn.relu(1.0 - beta * h)
    else:  # robust
        losses = (-(1.0 - e) * jax.nn.log_sigmoid(beta * h) + e * jax.nn.log_sigmoid(-beta * h)) / (1.0 - 2.0 * e)

    chosen_rewards = beta * (pc - rc)
    rejected_rewards = beta * (pr - rr)
    metrics = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).astype(jnp.float32).mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "logps/chosen": pc.mean(),
        "logps/rejected": pr.mean(),
    }
    return losses.mean(), metrics


def reward_loss(
    chosen_rewards: jax.Array,
    rejected_rewards: jax.Array,
    margin: Optional[jax.Array] = None,
    center_coef: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Bradley-Terry pairwise loss for a scalar reward model.

    ``-log s(r_chosen - r_rejected - margin)`` averaged over the batch
    (``margin`` per pair, default 0, as in Llama-2's margin loss). With
    ``center_coef > 0`` adds ``center_coef * mean((r_chosen + r_rejected)^2)``
    (TRL's ``center_rewards_coefficient``, Eisenstein et al. 2023) so rewards stay
    centred on zero; the BT loss alone is invariant to a shift.

    Metrics: ``accuracy`` (fraction with r_chosen > r_rejected), ``margin``
    (mean r_chosen - r_rejected), and ``mean_reward`` / ``min_reward`` /
    ``max_reward`` over both sides.
    """
    rc = chosen_rewards.astype(jnp.float32)
    rr = rejected_rewards.astype(jnp.float32)
    diff = rc - rr
    if margin is not None:
        diff = diff - jnp.asarray(margin, jnp.float32)
    loss = -jax.nn.log_sigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * jnp.mean((rc + rr) ** 2)
    both = jnp.concatenate([rc, rr])
    metrics = {
        "accuracy": (rc > rr).astype(jnp.float32).mean(),
        "margin": (rc - rr).mean(),
        "mean_reward": both.mean(),
        "min_reward": both.min(),
        "max_reward": both.max(),
    }
    return loss, metrics


# ----------------------------------------------------------------------------
# Pieces of the group-relative RL objective (GRPO-style).
# ----------------------------------------------------------------------------


SCALE_REWARDS = ("group", "batch", "none")
RL_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def nanstd(x: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
    """Unbiased (ddof=1) standard deviation ignoring NaNs, as TRL's ``nanstd``."""
    mean = jnp.nanmean(x, axis=axis, keepdims=True)
    var = jnp.nanmean((x - mean) ** 2, axis=axis, keepdims=True)
    count = jnp.sum(~jnp.isnan(x), axis=axis, keepdims=True)
    out = jnp.sqrt(var * count / (count - 1))
    return out if keepdims else jnp.squeeze(out, axis=axis)


def group_relative_advantages(
    rewards: jax.Array, group_size: int, *, scale_rewards: str = "group", eps: float = 1e-4
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(r - group mean) / (std + eps)`` for rewards laid out group-major, as TRL's ``GRPOTrainer``.

    ``rewards`` is ``[num_prompts * group_size]`` with the ``group_size``
    samples of each prompt contiguous. ``scale_rewards``: ``group`` divides by
    the group's std, ``batch`` by the std of the whole batch, ``none`` does
    not divide (Dr. GRPO). Stds are unbiased (ddof=1). NaN rewards (an
    unscorable completion) are left out of the means and stds and get
    advantage 0.

    Metrics (TRL's meaning): ``reward`` (mean), ``reward_std`` (std over the
    whole batch) and ``frac_reward_zero_std`` (fraction of rows whose group
    std, or batch std for ``batch``, is zero: no learning signal).
    """
    if group_size < 2:
        raise ValueError(f"group-relative advantages need group_size >= 2, got {group_size}")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}; expected one of {SCALE_REWARDS}")
    r = rewards.astype(jnp.float32)
    if r.ndim != 1 or r.shape[0] % group_size:
        raise ValueError(f"rewards shape {r.shape} is not [num_prompts * group_size={group_size}]")
    grouped = r.reshape(-1, group_size)
    mean = jnp.nanmean(grouped, axis=1, keepdims=True)
    if scale_rewards == "batch":
        std = jnp.broadcast_to(nanstd(r), grouped.shape)
    else:
        std = jnp.broadcast_to(nanstd(grouped, axis=1, keepdims=True), grouped.shape)
    adv = grouped - mean
    if scale_rewards != "none":
        adv = adv / (std + eps)
    adv = jnp.nan_to_num(adv, nan=0.0)
    metrics = {
        "reward": jnp.nanmean(r),
        "reward_std": nanstd(r),
        "frac_reward_zero_std": (jnp.abs(std) <= 1e-8).astype(jnp.float32).mean(),
    }
    return adv.reshape(-1), metrics


def k3_kl(logps: jax.Array, ref_logps: jax.Array) -> jax.Array:
    """Per-token k3 estimator of KL(policy || reference) (Schulman 2020).

    ``exp(ref - logp) - (ref - logp) - 1``: unbiased for samples drawn from the
    policy, always >= 0, lower variance than ``logp - ref``.
    """
    d = ref_logps.astype(jnp.float32) - logps.astype(jnp.float32)
    return jnp.exp(d) - d - 1.0


def token_entropy(logits: jax.Array) -> jax.Array:
    """Entropy ``-sum_v p log p`` of the next-token distribution, ``[..., V] -> [...]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def grpo_loss(
    logps: jax.Array,
    old_logps: jax.Array,
    ref_logps: Optional[jax.Array],
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: Optional[float] = None,
    beta: float = 0.0,
    loss_type: str = "dapo",
    normalizer: Optional[jax.Array] = None,
    max_completion_length: Optional[int] = None,
    kl_importance_correction: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Group-relative policy objective as TRL's ``GRPOTrainer`` computes it (token-level importance ratios).

    Per token: ``-min(ratio A, clip(ratio, 1 - clip_eps, 1 + clip_eps_high) A)
    + beta * kl`` with ``ratio = exp(logps - old_logps)`` and ``kl`` the k3
    estimator, multiplied by the ratio when ``kl_importance_correction`` (TRL's
    ``use_bias_correction_kl``). ``logps``/``old_logps``/``ref_logps`` and
    ``mask`` are ``[B, T]``, ``advantages`` ``[B]``. Aggregation over the
    completion tokens (``loss_type``, TRL's names and divisors):

    - ``grpo``: mean over each sequence's tokens, then over sequences;
    - ``bnpo``: sum over this batch's tokens / their count;
    - ``dr_grpo``: sum / (B x ``max_completion_length``);
    - ``dapo``: sum / ``normalizer``, the caller's token count of the whole
      generation batch per optimizer update (default: this batch's tokens).

    Metrics (TRL's): ``kl`` (token mean, when a reference is given),
    ``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
    ``clip_ratio/region_mean`` (token fractions where the ratio left the clip
    range on the side that zeroes the gradient), ``clip_ratio/low_min`` and
    ``clip_ratio/high_max`` (min / max over sequences of the per-sequence fraction).
    """
    if loss_type not in RL_LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}; expected one of {RL_LOSS_TYPES}")
    m = mask.astype(jnp.float32)
    n_tokens = jnp.maximum(m.sum(), 1.0)
    lp = logps.astype(jnp.float32)
    ratio = jnp.exp(lp - old_logps.astype(jnp.float32))
    a = advantages.astype(jnp.float32)[:, None]
    high = clip_eps if clip_eps_high is None else clip_eps_high
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high)
    per_token = -jnp.minimum(ratio * a, clipped_ratio * a)
    metrics = {}
    if ref_logps is not None:
        kl = k3_kl(lp, ref_logps)
        if kl_importance_correction:
            kl = kl * ratio
        metrics["kl"] = (kl * m).sum() / n_tokens
        if beta:
            per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * m).sum(-1) / jnp.maximum(m.sum(-1), 1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * m).sum() / n_tokens
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type='dr_grpo' needs max_completion_length")
        loss = (per_token * m).sum() / (per_token.shape[0] * max_completion_length)
    else:
        loss = (per_token * m).sum() / (n_tokens if normalizer is None else jnp.maximum(normalizer, 1.0))
    low = ((ratio < 1.0 - clip_eps) & (a < 0)).astype(jnp.float32)
    hi = ((ratio > 1.0 + high) & (a > 0)).astype(jnp.float32)
    region = jnp.maximum(low, hi)
    seq_tokens = m.sum(-1)
    has = seq_tokens > 0
    seq_mean = lambda x: (x * m).sum(-1) / jnp.maximum(seq_tokens, 1.0)  # noqa: E731
    metrics.update({
        "clip_ratio/low_mean": (low * m).sum() / n_tokens,
        "clip_ratio/high_mean": (hi * m).sum() / n_tokens,
        "clip_ratio/region_mean": (region * m).sum() / n_tokens,
        "clip_ratio/low_min": jnp.min(jnp.where(has, seq_mean(low), jnp.inf)),
        "clip_ratio/high_max": jnp.max(jnp.where(has, seq_mean(hi), -jnp.inf)),
    })
    return loss, metrics


def token_logps(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``log softmax(logits)[..., target]``, ``[..., V], [...] -> [...]`` (float32).

    The target logit is picked with a one-hot select-and-sum, not a gather: its
    gradient is then an elementwise select that fuses with the softmax
    gradient, where a gather's is a scatter into a zeroed ``[..., V]`` buffer;
    and no full ``[..., V]`` float32 log-softmax is materialised.
    """
    logits = logits.astype(jnp.float32)
    hit = jnp.arange(logits.shape[-1], dtype=targets.dtype) == targets[..., None]
    return jnp.sum(jnp.where(hit, logits, 0.0), axis=-1) - jax.nn.logsumexp(logits, axis=-1)


def masked_mean_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, normalizer: Optional[jax.Array] = None
) -> jax.Array:
    """Next-token cross-entropy summed over ``mask`` tokens / ``normalizer`` (default mask count)."""
    nll = -token_logps(logits, targets)
    m = mask.astype(jnp.float32)
    norm = jnp.maximum(m.sum(), 1.0) if normalizer is None else normalizer
    return (nll * m).sum() / norm
