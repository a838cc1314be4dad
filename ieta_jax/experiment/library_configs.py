"""Experiment config -> the library's configs, one pure function each: every config field is read in one place.

Nothing here touches devices, files or the sandbox; tests call these with a config and compare fields.
"""
from __future__ import annotations

import ml_collections

from configs import base
from ieta_jax import feedback, optim
from ieta_jax.trainers import DPOConfig, RewardConfig, RLConfig


def max_length(c: ml_collections.ConfigDict) -> int:
    """Prompt + completion tokens of one training sequence."""
    return c.max_prompt_len + c.max_new_tokens


def optim_config(c: ml_collections.ConfigDict, learning_rate: float, total_steps: int) -> optim.OptimConfig:
    """The shared optimizer settings; ``total_steps`` spans every iteration, so the schedule decays over the run."""
    return optim.OptimConfig(learning_rate=learning_rate, warmup_steps=c.warmup_steps,
                             total_steps=max(total_steps, 1), schedule=c.lr_schedule, weight_decay=c.weight_decay,
                             max_grad_norm=c.max_grad_norm, grad_accum_steps=c.grad_accum_steps,
                             no_decay_patterns=() if c.decay_norms_and_biases else optim.HF_NO_DECAY_PATTERNS)


def dpo_config(c: ml_collections.ConfigDict, pad_token_id: int) -> DPOConfig:
    return DPOConfig(batch_size=c.batch_size, max_length=max_length(c), pad_token_id=pad_token_id,
                     optim=optim_config(c, c.learning_rate, c.train_steps * c.num_iterations), seed=c.seed,
                     save_every=max(10, c.train_steps // 2), keep_checkpoints=c.checkpoint_keep,
                     beta=c.dpo.beta, loss_type=c.dpo.loss_type, label_smoothing=c.dpo.label_smoothing,
                     sft_weight=c.dpo.sft_weight)


def reward_config(c: ml_collections.ConfigDict, pad_token_id: int) -> RewardConfig:
    r = c.rlaif
    return RewardConfig(batch_size=c.batch_size, max_length=max_length(c), pad_token_id=pad_token_id,
                        optim=optim_config(c, r.reward_learning_rate, r.reward_steps * c.num_iterations),
                        seed=c.seed, save_every=max(10, r.reward_steps // 2), keep_checkpoints=c.checkpoint_keep)


def rl_updates_per_step(c: ml_collections.ConfigDict) -> int:
    """Optimizer updates of one RL step: PPO epochs x mini-batches of one rollout (every turn of every episode,
    padded to ``1 + (max_turns - 1) x repair_fixes`` sequences per episode)."""
    r = c.rlaif
    return r.inner_epochs * r.prompts_per_step * c.num_samples * base.rl_rows_per_episode(c) // c.batch_size


def rl_config(c: ml_collections.ConfigDict, pad_token_id: int, eos_token_id: int) -> RLConfig:
    r = c.rlaif
    return RLConfig(batch_size=c.batch_size, pad_token_id=pad_token_id,
                    optim=optim_config(c, c.learning_rate, c.train_steps * c.num_iterations * rl_updates_per_step(c)),
                    seed=c.seed, save_every=max(5, c.train_steps // 2), keep_checkpoints=c.checkpoint_keep,
                    prompts_per_step=r.prompts_per_step, num_generations=c.num_samples,
                    max_prompt_length=c.max_prompt_len, max_new_tokens=c.max_new_tokens,
                    temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, eos_token_id=eos_token_id,
                    ppo_epochs=r.inner_epochs, clip_eps=r.clip_eps, beta=r.kl_beta, scale_rewards=r.scale_rewards,
                    loss_type=r.loss_type, epsilon_high=r.epsilon_high or None,
                    use_bias_correction_kl=r.kl_importance_correction,
                    reward_model_weight=1.0, execution_reward_weight=r.execution_reward_weight,
                    max_turns=c.max_turns, turn_rewards=r.turn_rewards, repair_fixes=r.repair_fixes,
                    group_by_length=r.group_by_length, sft_weight=r.sft_weight,
                    sft_min_reward=feedback.PASSED_REWARD, sft_min_turn=r.sft_min_turn)


def executor_kwargs(c: ml_collections.ConfigDict) -> dict:
    """``sandbox.Executor(**executor_kwargs(c))``: local pools take `workers`; on Ray it is sandboxes per actor."""
    kwargs = {"backend": c.sandbox.backend, "timeout_s": c.timeout_s, "memory_mb": c.memory_mb, "trace": c.trace}
    if c.sandbox.backend != "process":
        kwargs["platform"] = c.sandbox.platform
    if c.sandbox.backend != "ray":
        return {**kwargs, "workers": c.sandbox.workers or None}
    kwargs.update(workers=None, workers_per_actor=c.sandbox.workers or None)
    if c.sandbox.ray_address:
        kwargs["ray_address"] = c.sandbox.ray_address
    if c.sandbox.ray_node_resource:
        kwargs["node_resource"] = c.sandbox.ray_node_resource
    return kwargs
