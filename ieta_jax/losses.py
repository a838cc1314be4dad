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
    policy_chosen_logits_mean: Optional[jax.Array] = None,
    policy_rejected_logits_mean: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Direct Preference Optimisation loss, averaged over the batch.

    All log-prob inputs are ``[batch]`` sequence log-probabilities of the
    completion tokens (summed, or per-token averaged for IPO). With the implicit
    reward margin

        h = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)

    and ``s`` the logistic sigmoid, ``e`` = ``label_smoothing``:

    - ``sigmoid`` (DPO, Rafailov et al. 2023; cDPO when e > 0):
      ``-(1 - e) log s(beta h) - e log s(-beta h)``
    - ``ipo`` (Azar et al. 2023): ``(h - 1 / (2 beta))^2``; the IPO paper uses
      per-token-averaged log-probs, which the DPO trainer feeds for this type.
    - ``hinge`` (SLiC, Zhao et al. 2023): ``max(0, 1 - beta h)``
    - ``robust`` (rDPO, Chowdhury et al. 2024):
      ``(-(1 - e) log s(beta h) + e log s(-beta h)) / (1 - 2 e)``

    Label smoothing ``e`` is the assumed probability that a preference label is
    flipped (noisy annotator / noisy execution verdict). ``sigmoid`` then fits
    the smoothed target ("conservative DPO": the margin stops growing once
    ``s(beta h) = 1 - e``); ``robust`` instead builds an unbiased estimate of
    the clean-label loss, which needs ``e < 0.5``. ``ipo`` and ``hinge`` ignore
    it.

    Metrics (TRL names, batch means): ``rewards/chosen`` and
    ``rewards/rejected`` are the implicit rewards ``beta * (policy - ref)``,
    ``rewards/accuracies`` the fraction with chosen reward > rejected reward,
    ``rewards/margins`` their difference, ``logps/chosen`` / ``logps/rejected``
    the policy log-probs, and ``logits/chosen`` / ``logits/rejected`` the mean
    output logit over the completion tokens when the caller passes it.
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
    if policy_chosen_logits_mean is not None:
        metrics["logits/chosen"] = jnp.mean(policy_chosen_logits_mean.astype(jnp.float32))
    if policy_rejected_logits_mean is not None:
        metrics["logits/rejected"] = jnp.mean(policy_rejected_logits_mean.astype(jnp.float32))
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


def group_relative_advantages(
    rewards: jax.Array, group_size: int, *, scale_by_std: bool = True, eps: float = 1e-4
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(r - group mean) / (group std + eps)`` for rewards laid out group-major.

    ``rewards`` is ``[num_prompts * group_size]`` with the ``group_size``
    samples of each prompt contiguous. The std is the unbiased (ddof=1) sample
    std, as TRL's GRPO computes it; ``scale_by_std=False`` skips the division
    (Dr. GRPO), which avoids up-weighting prompts whose samples barely differ.

    Metrics: ``reward``, ``reward_std`` (mean within-group std) and
    ``frac_reward_zero_std`` (fraction of groups whose samples all got the same
    reward, which carry no learning signal).
    """
    if group_size < 2:
        raise ValueError(f"group-relative advantages need group_size >= 2, got {group_size}")
    r = rewards.astype(jnp.float32)
    if r.ndim != 1 or r.shape[0] % group_size:
        raise ValueError(f"rewards shape {r.shape} is not [num_prompts * group_size={group_size}]")
    grouped = r.reshape(-1, group_size)
    mean = grouped.mean(axis=1, keepdims=True)
    std = grouped.std(axis=1, ddof=1, keepdims=True)
    adv = grouped - mean
    if scale_by_std:
        adv = adv / (std + eps)
    metrics = {
        "reward": r.mean(),
        "reward_std": std.mean(),
        "frac_reward_zero_std": (std[:, 0] < 1e-6).astype(jnp.float32).mean(),
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


def ppo_clip_token_loss(
    logps: jax.Array, old_logps: jax.Array, advantages: jax.Array, *, clip_eps: float
) -> tuple[jax.Array, jax.Array]:
    """Per-token PPO clipped surrogate, ``-min(ratio A, clip(ratio, 1-eps, 1+eps) A)``.

    ``logps``/``old_logps`` are ``[B, T]``, ``advantages`` ``[B]`` (one per
    sequence, broadcast over its tokens). Returns the per-token loss and a
    boolean mask of tokens where the clipped branch was active (it has zero
    gradient there).
    """
    ratio = jnp.exp(logps.astype(jnp.float32) - old_logps.astype(jnp.float32))
    a = advantages.astype(jnp.float32)[:, None]
    unclipped = ratio * a
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a
    return -jnp.minimum(unclipped, clipped), clipped < unclipped


def grpo_loss(
    logps: jax.Array,
    old_logps: jax.Array,
    ref_logps: Optional[jax.Array],
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    normalizer: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Group-relative policy objective: PPO clip + ``beta`` * k3 KL, token-averaged.

    Token losses are summed over the completion tokens (``mask`` ``[B, T]``)
    and divided by ``normalizer`` (default: the number of completion tokens in
    this batch), i.e. every generated token weighs the same (DAPO / TRL
    ``loss_type="dapo"``). Passing a global token count as ``normalizer`` keeps
    gradient accumulation over micro-batches exact.

    Metrics ``kl`` (mean k3 over tokens, when a reference is given) and
    ``clip_ratio`` (fraction of tokens whose clipped branch was active).
    """
    m = mask.astype(jnp.float32)
    n_tokens = jnp.maximum(m.sum(), 1.0)
    norm = n_tokens if normalizer is None else normalizer
    per_token, clipped = ppo_clip_token_loss(logps, old_logps, advantages, clip_eps=clip_eps)
    metrics = {"clip_ratio": (clipped.astype(jnp.float32) * m).sum() / n_tokens}
    if ref_logps is not None:
        kl = k3_kl(logps, ref_logps)
        metrics["kl"] = (kl * m).sum() / n_tokens
        if beta:
            per_token = per_token + beta * kl
    loss = (per_token * m).sum() / norm
    return loss, metrics


def masked_mean_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, normalizer: Optional[jax.Array] = None
) -> jax.Array:
    """Next-token cross-entropy summed over ``mask`` tokens / ``normalizer`` (default mask count)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    m = mask.astype(jnp.float32)
    norm = jnp.maximum(m.sum(), 1.0) if normalizer is None else normalizer
    return (nll * m).sum() / norm
