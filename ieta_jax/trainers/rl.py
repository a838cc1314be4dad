"""Group-relative RL (RLAIF): sample G completions per prompt, score them, PPO-clip the policy toward the better ones.

One iteration = one rollout of ``prompts_per_step`` prompts x ``num_generations``
samples from the current policy (``ieta_jax.sampling.generate``), rewards
(``reward_model_weight`` x reward-model score + ``execution_reward_weight`` x
the caller's execution reward), group-relative advantages, then
``ppo_epochs`` passes over the rollout in mini-batches of ``batch_size``
completions, each an optimizer update through the shared jitted step, with
the PPO clipped objective and ``beta`` x k3 KL to the frozen reference.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from ieta_jax import losses, sampling, sharding
from ieta_jax.trainers.base import Trainer, TrainerConfig, sequence_logps, split_model
from ieta_jax.trainers.batching import TokenIds, left_pad_prompts, stream_indices

# execution_reward(prompt_indices, completions) -> rewards: indices into the fit's prompt list and the generated
# token ids of each completion (EOS included when it was produced), one float per completion.
ExecutionReward = Callable[[np.ndarray, list[list[int]]], Sequence[float]]


@dataclasses.dataclass
class RLConfig(TrainerConfig):
    """``batch_size`` is completions per optimizer update; ``max_length`` is derived (prompt + new tokens)."""

    prompts_per_step: int = 4
    num_generations: int = 4  # G samples per prompt (the group)
    max_prompt_length: int = 128
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_token_id: Optional[int] = None
    ppo_epochs: int = 1
    clip_eps: float = 0.2
    beta: float = 0.04  # k3 KL coefficient
    scale_rewards: bool = True  # divide by the group std (False = Dr. GRPO)
    reward_model_weight: float = 1.0
    execution_reward_weight: float = 1.0

    def __post_init__(self):
        self.max_length = self.max_prompt_length + self.max_new_tokens
        super().__post_init__()
        if self.num_generations < 2:
            raise ValueError(f"RLConfig.num_generations must be >= 2 for group-relative advantages, "
                             f"got {self.num_generations}")
        rollout = self.prompts_per_step * self.num_generations
        if rollout % self.batch_size:
            raise ValueError(f"prompts_per_step x num_generations = {rollout} is not divisible by "
                             f"batch_size={self.batch_size}")
        if self.ppo_epochs < 1:
            raise ValueError(f"RLConfig.ppo_epochs must be >= 1, got {self.ppo_epochs}")

    @property
    def updates_per_iteration(self) -> int:
        return self.ppo_epochs * self.prompts_per_step * self.num_generations // self.batch_size


class RLTrainer(Trainer):
    """``RLTrainer(policy, RLConfig(...), reward_model=rm, execution_reward=fn, mesh=...).fit(prompts, iterations)``.

    ``prompts``: token-id lists. ``reward_model``: a ``models.RewardModel`` (or
    None); ``execution_reward``: see ``ExecutionReward`` (or None); at least
    one is needed. ``ref_model`` defaults to the policy at construction.
    History rows (one per iteration): ``reward``, ``reward_std``,
    ``frac_reward_zero_std``, ``completions/mean_length``, ``kl``,
    ``clip_ratio``, ``entropy``, ``rewards/reward_model``,
    ``rewards/execution``, plus ``train/*`` and ``perf/*``.
    """

    name = "rl"

    def __init__(self, model: nnx.Module, config: RLConfig, *, reward_model: Optional[nnx.Module] = None,
                 execution_reward: Optional[ExecutionReward] = None, ref_model: Optional[nnx.Module] = None, **kw):
        if reward_model is None and execution_reward is None:
            raise ValueError("RLTrainer needs a reward_model, an execution_reward, or both")
        kw["mesh"] = kw.get("mesh") or sharding.make_mesh()
        # The reference is taken before the base class restores a checkpoint: on resume it stays the initial policy.
        _, self.ref_params, _, _, _ = split_model(ref_model if ref_model is not None else model, kw["mesh"])
        super().__init__(model, config, **kw)
        self.execution_reward = execution_reward
        self.reward_model = None
        if reward_model is not None:
            self._rm_graphdef, self._rm_params, _, self._rm_frozen, _ = split_model(reward_model, self.mesh)
            self._rm_fn = jax.jit(lambda p, f, ids, m: nnx.merge(self._rm_graphdef, p, f)(ids, attention_mask=m))
            self.reward_model = reward_model
        self._logps_fn = jax.jit(self._token_logps)

    def flops_per_example(self, batch):
        return 6.0 * self.num_params * batch["input_ids"].shape[-1]

    # ------------------------------------------------------------------ forward pieces
    def _token_logps(self, params, aux, ids, attn, loss_mask):
        logits = self.merge(params, aux)(ids, attention_mask=attn)
        return sequence_logps(logits, ids, loss_mask)[3]

    def loss_fn(self, params, aux, batch, rng):
        ids, attn, lm = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
        logits = self.merge(params, aux)(ids, attention_mask=attn)
        tok_logp = sequence_logps(logits, ids, lm)[3]
        mask = lm[:, 1:].astype(jnp.float32)
        loss, metrics = losses.grpo_loss(tok_logp, batch["old_logps"], batch["ref_logps"], batch["advantages"], mask,
                                         clip_eps=self.config.clip_eps, beta=self.config.beta,
                                         normalizer=batch["normalizer"][0])
        ent = losses.token_entropy(jax.lax.stop_gradient(logits[:, :-1]))
        metrics["entropy"] = (ent * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        return loss, metrics

    def _chunked(self, fn, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Run a jitted ``fn(**device_batch)`` over the rollout in ``batch_size`` chunks; host result."""
        n = next(iter(arrays.values())).shape[0]
        bs = self.config.batch_size
        out = []
        for start in range(0, n, bs):
            b = sharding.shard_batch({k: v[start:start + bs] for k, v in arrays.items()}, self.mesh)
            with jax.set_mesh(self.mesh):
                out.append(sharding.gather_to_host(fn(b)))
        return np.concatenate(out)

    # ------------------------------------------------------------------ rollout
    def rollout(self, prompts: Sequence[TokenIds], prompt_indices: np.ndarray, key: jax.Array) -> tuple[dict, dict]:
        """Sample, score and compute advantages / old and reference log-probs for one iteration."""
        cfg = self.config
        G = cfg.num_generations
        p_ids, p_mask = left_pad_prompts([prompts[i] for i in prompt_indices], cfg.max_prompt_length,
                                         cfg.pad_token_id)
        t0 = time.perf_counter()
        out = sampling.generate(self.model, p_ids, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, top_k=cfg.top_k, rng=key, eos_token_id=cfg.eos_token_id,
                                prompt_mask=p_mask, num_samples=G, pad_token_id=cfg.pad_token_id)
        gen_s = time.perf_counter() - t0
        rows = p_ids.shape[0] * G
        prompt_ids, prompt_mask = np.repeat(p_ids, G, 0), np.repeat(p_mask, G, 0)
        lengths = np.asarray(out.lengths).astype(np.int64)
        comp_mask = (np.arange(cfg.max_new_tokens)[None, :] < lengths[:, None]).astype(np.int32)
        tokens = np.where(comp_mask > 0, np.asarray(out.tokens), cfg.pad_token_id).astype(np.int32)
        batch = {
            "input_ids": np.concatenate([prompt_ids, tokens], 1).astype(np.int32),
            "attention_mask": np.concatenate([prompt_mask, comp_mask], 1).astype(np.int32),
            "loss_mask": np.concatenate([np.zeros_like(prompt_mask), comp_mask], 1).astype(np.float32),
        }
        # Rewards.
        row_prompt = np.repeat(prompt_indices, G)
        completions = [tokens[i, :lengths[i]].tolist() for i in range(rows)]
        rewards = np.zeros(rows, np.float32)
        metrics = {}
        if self.reward_model is not None:
            rm = self._chunked(lambda b: self._rm_fn(self._rm_params, self._rm_frozen, b["input_ids"],
                                                     b["attention_mask"]), batch)
            rewards += cfg.reward_model_weight * rm
            metrics["rewards/reward_model"] = float(rm.mean())
        if self.execution_reward is not None:
            ex = np.asarray(self.execution_reward(row_prompt, completions), np.float32)
            if ex.shape != (rows,):
                raise ValueError(f"execution_reward returned shape {ex.shape}, expected ({rows},)")
            rewards += cfg.execution_reward_weight * ex
            metrics["rewards/execution"] = float(ex.mean())
        adv, adv_metrics = losses.group_relative_advantages(jnp.asarray(rewards), G, scale_by_std=cfg.scale_rewards)
        metrics.update({k: float(v) for k, v in adv_metrics.items()})
        metrics["completions/mean_length"] = float(lengths.mean())
        metrics["perf/generation_tokens_per_sec"] = float(lengths.sum()) / max(gen_s, 1e-9)
        batch["advantages"] = np.asarray(adv, np.float32)
        fwd = {k: batch[k] for k in ("input_ids", "attention_mask", "loss_mask")}
        batch["old_logps"] = self._chunked(
            lambda b: self._logps_fn(self.state.params, self.aux, b["input_ids"], b["attention_mask"], b["loss_mask"]),
            fwd)
        batch["ref_logps"] = self._chunked(
            lambda b: self._logps_fn(self.ref_params, self.aux, b["input_ids"], b["attention_mask"], b["loss_mask"]),
            fwd)
        return batch, metrics

    # ------------------------------------------------------------------ the loop
    def fit(self, prompts: Sequence[TokenIds], num_iterations: int) -> list[dict[str, float]]:
        """``num_iterations`` rollout + update rounds over ``prompts`` (resumable, like ``Trainer.fit``)."""
        cfg = self.config
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        prompts = [list(p) for p in prompts]
        if not prompts:
            raise ValueError("no prompts")
        ids, _ = left_pad_prompts(prompts, cfg.max_prompt_length, cfg.pad_token_id)
        upi = cfg.updates_per_iteration
        start = self._begin_fit({"prompts": ids}, num_iterations * upi)
        first_row = len(self.history) - (self.step - start) // upi
        bar = tqdm(total=num_iterations, initial=(self.step - start) // upi, desc=self.name,
                   disable=not cfg.progress, leave=False)
        base_key = jax.random.PRNGKey(cfg.seed + 1)
        while self.step < start + num_iterations * upi:
            it = (self.step - start) // upi
            t0 = time.perf_counter()
            idx = stream_indices(len(prompts), it * cfg.prompts_per_step, cfg.prompts_per_step, cfg.seed, cfg.shuffle)
            batch, row = self.rollout(prompts, idx, jax.random.fold_in(base_key, self.step))
            n_rows = batch["input_ids"].shape[0]
            update_metrics, tokens = [], 0
            for epoch in range(cfg.ppo_epochs):
                order = np.random.default_rng([cfg.seed, self.step, epoch]).permutation(n_rows)
                for mb in range(n_rows // cfg.batch_size):
                    sel = order[mb * cfg.batch_size:(mb + 1) * cfg.batch_size]
                    mbatch = {k: v[sel] for k, v in batch.items()}
                    n_tok = max(float(mbatch["loss_mask"][:, 1:].sum()), 1.0)
                    mbatch["normalizer"] = np.full((len(sel),), n_tok / cfg.optim.grad_accum_steps, np.float32)
                    update_metrics.append(self.train_step(mbatch))
                    tokens += self.count_tokens(mbatch)
            update_metrics = jax.device_get(update_metrics)
            for k in update_metrics[0]:
                vals = [float(np.asarray(m[k])) for m in update_metrics]
                row[k] = vals[-1] if k in ("train/skipped_steps", "train/learning_rate") else float(np.mean(vals))
            dt = time.perf_counter() - t0
            self._record(row, tokens=tokens, seconds=dt,
                         flops=self.flops_per_example(batch) * n_rows * cfg.ppo_epochs)
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.3f}")
            done = self.step >= start + num_iterations * upi
            if done or (it + 1) % cfg.save_every == 0:
                self.save(force=True)
        bar.close()
        if self.checkpointer is not None:
            self.checkpointer.wait()
        if self.writer is not None:
            self.writer.flush()
        return self.history[max(first_row, 0):]
