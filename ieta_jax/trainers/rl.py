"""Group-relative RL (RLAIF): sample G completions per prompt, score them, PPO-clip the policy toward the better ones.

One iteration = one rollout of ``prompts_per_step`` prompts x ``num_generations``
samples from the current policy (``ieta_jax.sampling.generate``), rewards
(``reward_model_weight`` x reward-model score + ``execution_reward_weight`` x
the caller's execution reward), group-relative advantages, then
``ppo_epochs`` passes over the rollout in mini-batches of ``batch_size``
completions, each an optimizer update through the shared jitted step, with
the PPO clipped objective and ``beta`` x k3 KL to the frozen reference.

Semantics follow TRL 1.16's ``GRPOTrainer`` (``ppo_epochs`` is its
``num_iterations``): policy, old and reference log-probs and the entropy
are taken from logits divided by the sampling ``temperature``; the old
log-probs are the policy's own (detached) when there is one update per
rollout; the reference is not run when ``beta == 0``; ``loss_type``,
``scale_rewards``, ``epsilon_high``, ``use_bias_correction_kl`` and the
logged metrics mean what they mean there (``losses.grpo_loss``,
``losses.group_relative_advantages``).

Multi-turn episodes (``episode_rollout``): the caller rolls out G episodes per
prompt (turn 1 from the prompt, later turns from repair prompts) and returns
every turn as one (prompt, completion) sequence (``EpisodeRollout``). An
episode's reward is that of its final program; the advantages are
group-relative over the G episodes of a prompt, and every turn's sequence
carries its episode's advantage (``turn_rewards``: the turn-t sequence carries
the advantage of the episode's program after turn t instead, muCode-style).
With ``repair_fixes`` k > 1 a repair turn samples k fixes of the same failing
program (the episode continues with the first): they share one prompt, so they
are a group of their own, and each fix's tokens get its advantage within that
group (RLEF, Gehring et al. 2024; the GRPO baseline of the prompt it answers).
A rollout is padded to ``prompts_per_step x G x (1 + (max_turns - 1) x k)``
rows (padding rows score no token), so an iteration is always the same number
of updates and resumes exactly; ``grpo`` and ``dr_grpo`` average over the real
sequences.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import losses, sampling, sharding
from ieta_jax.trainers.base import Trainer, TrainerConfig, batched_apply, sequence_logps, split_model
from ieta_jax.trainers.batching import TokenIds, left_pad_prompts, stream_indices, trim_padding

# execution_reward(prompt_indices, completions) -> rewards: indices into the fit's prompt list and the generated
# token ids of each completion (EOS included when it was produced), one float per completion.
ExecutionReward = Callable[[np.ndarray, list[list[int]]], Sequence[float]]


@dataclasses.dataclass
class EpisodeRollout:
    """The turns of one iteration's episodes, one (prompt, completion) sequence per turn.

    Episode ``e`` is sample ``e % num_generations`` of prompt ``prompt_indices[e // num_generations]`` (group-major),
    and has exactly one turn-1 sequence and, per later turn it reached, ``RLConfig.repair_fixes`` sequences: the
    fixes ``0 .. k-1`` of its previous program (fix 0 is the program the episode continues with).
    """

    prompts: list[TokenIds]          # per sequence: the turn's prompt (turn 1: the task's; later: the repair prompt)
    completions: list[TokenIds]      # per sequence: the program's tokens, EOS included, 1..max_new_tokens of them
    episodes: np.ndarray             # [sequences] the episode each sequence belongs to
    turns: np.ndarray                # [sequences] its turn, 1-based
    execution: Optional[np.ndarray] = None  # [sequences] execution reward of the sequence's program (NaN: unscorable)
    fixes: Optional[np.ndarray] = None      # [sequences] the fix index within its turn (None: all 0, one per turn)
    # (prompt, completion) pairs that RLConfig.sft_weight imitates and nothing else trains on (no advantage, KL or
    # entropy), e.g. a task's passing program under a repair prompt of the same task (muCode's relabelling: a
    # correct program answers every turn's prompt). They take the rollout's padding rows, the first ones while
    # rows last; ignored when sft_weight is 0.
    imitations: Optional[list[tuple[TokenIds, TokenIds]]] = None


# episode_rollout(model, prompt_indices, key) -> EpisodeRollout: num_generations episodes of each prompt sampled from
# ``model`` (the current policy) with randomness from ``key`` (the same key gives the same episodes).
EpisodeRolloutFn = Callable[[nnx.Module, np.ndarray, jax.Array], EpisodeRollout]


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
    ppo_epochs: int = 1  # passes over each rollout (TRL's num_iterations)
    clip_eps: float = 0.2  # TRL's epsilon (the lower clip; also the upper one unless epsilon_high is set)
    epsilon_high: Optional[float] = None  # upper clip (DAPO's clip-higher); None = clip_eps
    beta: float = 0.04  # k3 KL coefficient; 0 skips the reference model (and the kl metric), as TRL
    use_bias_correction_kl: bool = True  # multiply the k3 KL by the importance ratio (TRL's default)
    loss_type: str = "dapo"  # grpo | bnpo | dr_grpo | dapo (TRL's names, divisors and default)
    # group | batch | none: divide advantages by the group std, the batch std, or not at all (Dr. GRPO).
    # True / False are read as "group" / "none".
    scale_rewards: str = "group"
    reward_model_weight: float = 1.0
    execution_reward_weight: float = 1.0
    max_turns: int = 1  # turns per episode (> 1 needs an episode_rollout); rollout rows = prompts x G x max_turns
    turn_rewards: bool = False  # episodes: turn t's tokens get the advantage after turn t, not the final one
    # Episodes: fixes sampled per failing program at each repair turn; > 1 makes them a group of their own (their
    # tokens get the advantage among the fixes of the same program), and adds (max_turns - 1) x k rows per episode.
    repair_fixes: int = 1
    # Mini-batches of rows of similar length (HF's group_by_length; TRL deals rows at random): each update is cut
    # to its own longest row, so short turn-1 rows do not pay for long repair prompts. The split into mini-batches
    # changes, the rollout and its losses do not.
    group_by_length: bool = False
    # Expert iteration beside the policy gradient (muCode's generator update; RAFT): + sft_weight x the NLL (at
    # temperature 1) of the rollout's sequences whose execution reward is >= sft_min_reward (for the experiment: the
    # programs that passed the hidden tests), summed over their tokens and divided like the policy loss (dapo: the
    # rollout's completion tokens per update). Needs execution rewards. Logged as ``nll_loss``. Episodes: only the
    # sequences of turn >= sft_min_turn (2: passing repairs alone).
    sft_weight: float = 0.0
    sft_min_reward: float = 1.0
    sft_min_turn: int = 1

    def __post_init__(self):
        self.max_length = self.max_prompt_length + self.max_new_tokens
        super().__post_init__()
        if self.num_generations < 2:
            raise ValueError(f"RLConfig.num_generations must be >= 2 for group-relative advantages, "
                             f"got {self.num_generations}")
        if self.max_turns < 1 or self.repair_fixes < 1:
            raise ValueError(f"RLConfig.max_turns and repair_fixes must be >= 1, got {self.max_turns} and "
                             f"{self.repair_fixes}")
        if self.rows_per_episode > self.batch_size:
            # Every mini-batch of a padded rollout gets at least one real sequence (each episode has a turn 1).
            raise ValueError(f"RLConfig: 1 + (max_turns - 1) x repair_fixes = {self.rows_per_episode} sequences per "
                             f"episode exceed batch_size={self.batch_size}")
        if self.rollout_rows % self.batch_size:
            raise ValueError(f"prompts_per_step x num_generations x (1 + (max_turns - 1) x repair_fixes) = "
                             f"{self.rollout_rows} is not divisible by batch_size={self.batch_size}")
        if not self.sft_weight >= 0 or self.sft_min_turn < 1:
            raise ValueError(f"RLConfig.sft_weight must be >= 0 and sft_min_turn >= 1, got {self.sft_weight} and "
                             f"{self.sft_min_turn}")
        if self.ppo_epochs < 1:
            raise ValueError(f"RLConfig.ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if isinstance(self.scale_rewards, bool):
            self.scale_rewards = "group" if self.scale_rewards else "none"
        if self.scale_rewards not in losses.SCALE_REWARDS:
            raise ValueError(f"RLConfig.scale_rewards={self.scale_rewards!r}; expected one of {losses.SCALE_REWARDS}")
        if self.loss_type not in losses.RL_LOSS_TYPES:
            raise ValueError(f"RLConfig.loss_type={self.loss_type!r}; expected one of {losses.RL_LOSS_TYPES}")
        if self.temperature <= 0:
            raise ValueError(f"RLConfig.temperature must be > 0, got {self.temperature}")
        if self.epsilon_high is not None and self.epsilon_high < 0:
            raise ValueError(f"RLConfig.epsilon_high must be >= 0, got {self.epsilon_high}")

    @property
    def rows_per_episode(self) -> int:
        """The most sequences one episode can have: turn 1, then ``repair_fixes`` per later turn."""
        return 1 + (self.max_turns - 1) * self.repair_fixes

    @property
    def rollout_rows(self) -> int:
        """Sequences of one rollout: every turn of every episode, padded to the most there can be."""
        return self.prompts_per_step * self.num_generations * self.rows_per_episode

    @property
    def updates_per_iteration(self) -> int:
        return self.ppo_epochs * self.rollout_rows // self.batch_size


class RLTrainer(Trainer):
    """``RLTrainer(policy, RLConfig(...), reward_model=rm, execution_reward=fn, mesh=...).fit(prompts, iterations)``.

    ``prompts``: token-id lists. ``reward_model``: a ``models.RewardModel`` (or
    None); ``execution_reward``: see ``ExecutionReward`` (or None); at least
    one is needed. ``ref_model`` defaults to the policy at construction.
    History rows (one per iteration, TRL's names): ``reward``, ``reward_std``,
    ``frac_reward_zero_std``, ``completions/mean_length``, ``kl`` (when
    ``beta != 0``), ``clip_ratio/*``, ``entropy``,
    ``rewards/{reward_model,execution}/{mean,std}``, plus ``train/*``,
    ``perf/*`` and ``time/{generation,reward,update}_s``.

    ``episode_rollout`` (see ``EpisodeRolloutFn``) replaces the one-turn
    sampling and the ``execution_reward`` by multi-turn episodes that carry
    their own execution rewards; ``reward``/``rewards/*`` are then the
    episodes' final rewards, plus ``episodes/mean_turns``.
    """

    name = "rl"
    # Batches are cut to their used columns, padded to a multiple of this: at most max_length / 64 shapes to compile.
    length_multiple = 64

    def __init__(self, model: nnx.Module, config: RLConfig, *, reward_model: Optional[nnx.Module] = None,
                 execution_reward: Optional[ExecutionReward] = None, ref_model: Optional[nnx.Module] = None,
                 episode_rollout: Optional[EpisodeRolloutFn] = None, **kw):
        if reward_model is None and execution_reward is None and episode_rollout is None:
            raise ValueError("RLTrainer needs a reward_model, an execution_reward, or both")
        if episode_rollout is not None and execution_reward is not None:
            raise ValueError("with an episode_rollout the execution rewards come from it; pass no execution_reward")
        if config.max_turns > 1 and episode_rollout is None:
            raise ValueError(f"RLConfig.max_turns={config.max_turns} needs an episode_rollout")
        if config.sft_weight > 0 and execution_reward is None and episode_rollout is None:
            raise ValueError("RLConfig.sft_weight > 0 imitates sequences by their execution reward; pass an "
                             "execution_reward or an episode_rollout that scores its programs")
        kw["mesh"] = kw.get("mesh") or sharding.make_mesh()
        # The reference is taken before the base class restores a checkpoint: on resume it stays the initial policy.
        _, self.ref_params, _, _, _ = split_model(ref_model if ref_model is not None else model, kw["mesh"])
        super().__init__(model, config, **kw)
        self.execution_reward = execution_reward
        self.episode_rollout = episode_rollout
        self.reward_model = None
        if reward_model is not None:
            self._rm_graphdef, self._rm_params, _, self._rm_frozen, _ = split_model(reward_model, self.mesh)
            self._rm_fn = jax.jit(lambda p, f, ids, m: nnx.merge(self._rm_graphdef, p, f)(ids, attention_mask=m))
            self.reward_model = reward_model
        self._logps_fn = jax.jit(self._token_logps)

    def flops_per_example(self, batch):
        return 6.0 * self.num_params * batch["input_ids"].shape[-1]

    @property
    def on_policy(self) -> bool:
        """One optimizer update per rollout: the old log-probs are the policy's own, detached (as TRL)."""
        return self.config.updates_per_iteration == 1

    # ------------------------------------------------------------------ forward pieces
    def _logits(self, params, aux, ids, attn):
        """float32 logits at temperature 1."""
        return self.merge(params, aux)(ids, attention_mask=attn).astype(jnp.float32)

    def _scaled_logits(self, params, aux, ids, attn):
        """Logits at the sampling temperature (the distribution the completions were drawn from)."""
        return self._logits(params, aux, ids, attn) / self.config.temperature

    def _sft_tokens(self, batch: dict[str, np.ndarray], execution: Optional[np.ndarray],
                    turns: Optional[np.ndarray] = None, imitation_rows: slice = slice(0, 0)) -> dict[str, np.ndarray]:
        """``{"sft_tokens": [rows, L]}``: the tokens ``sft_weight`` imitates, those of the scored sequences whose
        execution reward reaches ``sft_min_reward`` (NaN never; ``turns``: each sequence's turn, None: all 1) and
        the completions of ``imitation_rows``; {} when off."""
        cfg = self.config
        if cfg.sft_weight == 0:
            return {}
        if execution is None:
            raise ValueError("RLConfig.sft_weight > 0 but this rollout has no execution rewards")
        n = len(execution)
        chosen = np.zeros(batch["input_ids"].shape[0], bool)
        chosen[:n] = np.nan_to_num(np.asarray(execution, np.float32), nan=-np.inf) >= cfg.sft_min_reward
        chosen[:n] &= (np.ones(n, np.int64) if turns is None else np.asarray(turns)) >= cfg.sft_min_turn
        tokens = batch["loss_mask"] * chosen[:, None]
        completion = np.zeros_like(tokens)
        completion[:, cfg.max_prompt_length:] = batch["attention_mask"][:, cfg.max_prompt_length:]
        tokens[imitation_rows] = completion[imitation_rows]
        return {"sft_tokens": tokens.astype(np.float32)}

    def _token_logps(self, params, aux, ids, attn, loss_mask):
        return sequence_logps(self._scaled_logits(params, aux, ids, attn), ids, loss_mask)[3]

    def loss_fn(self, params, aux, batch, rng):
        cfg = self.config
        ids, attn, lm = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
        raw = self._logits(params, aux, ids, attn)
        logits = raw / cfg.temperature  # _scaled_logits, sharing the forward with the NLL term
        tok_logp = sequence_logps(logits, ids, lm)[3]
        mask = lm[:, 1:].astype(jnp.float32)
        old = batch["old_logps"] if "old_logps" in batch else jax.lax.stop_gradient(tok_logp)
        loss, metrics = losses.grpo_loss(tok_logp, old, batch.get("ref_logps"), batch["advantages"], mask,
                                         clip_eps=cfg.clip_eps, clip_eps_high=cfg.epsilon_high, beta=cfg.beta,
                                         loss_type=cfg.loss_type, normalizer=batch["normalizer"][0],
                                         max_completion_length=cfg.max_new_tokens,
                                         kl_importance_correction=cfg.use_bias_correction_kl)
        if cfg.loss_type in ("grpo", "dr_grpo"):
            # Their divisor counts sequences; an episode rollout's padding rows (no scored token) are not ones.
            # Without padding the factor is exactly 1.
            rows = jnp.float32(mask.shape[0])
            loss = loss * (rows / jnp.maximum((mask.sum(-1) > 0).sum().astype(jnp.float32), 1.0))
        if cfg.sft_weight > 0:
            nll = -sequence_logps(raw, ids, batch["sft_tokens"])[3].sum() / batch["normalizer"][0]
            loss = loss + cfg.sft_weight * nll
            metrics["nll_loss"] = nll
        ent = losses.token_entropy(jax.lax.stop_gradient(logits[:, :-1]))
        metrics["entropy"] = (ent * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        return loss, metrics

    def _lengths(self, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: prompt tokens (left-padded to ``max_prompt_length``) and completion tokens."""
        p = self.config.max_prompt_length
        return attention_mask[:, :p].sum(1), attention_mask[:, p:].sum(1)

    def _chunked(self, fn, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """``fn`` over the rows in chunks of similar length, each cut to its used columns; results in row order."""
        order = np.lexsort(self._lengths(arrays["attention_mask"])[::-1])  # by prompt length, then completion's
        out = batched_apply(fn, {k: v[order] for k, v in arrays.items()}, self.config.batch_size, self.mesh,
                            trim=self.length_multiple)
        return jax.tree.map(lambda x: x[np.argsort(order)], out)

    # ------------------------------------------------------------------ rollout
    def advantages(self, per_func: dict[str, tuple[float, np.ndarray]], group_size: Optional[int] = None
                   ) -> tuple[np.ndarray, dict[str, float]]:
        """Weighted sum of the reward functions' values, then group-relative advantages (TRL's rules).

        ``per_func``: name -> (weight, ``[rows]`` values). A NaN value (the
        function could not score that completion) counts as absent (NaN-sum);
        a completion no function could score gets a NaN reward, stays out of
        the group statistics, and gets advantage 0. Groups are ``group_size``
        contiguous rows (default ``num_generations``).
        """
        weighted = np.stack([w * np.asarray(v, np.float32) for w, v in per_func.values()], 1)
        unscorable = np.isnan(weighted).all(1)
        rewards = np.where(unscorable, np.nan, np.nansum(weighted, 1)).astype(np.float32)
        adv, metrics = losses.group_relative_advantages(jnp.asarray(rewards), group_size or self.config.num_generations,
                                                        scale_rewards=self.config.scale_rewards)
        return np.asarray(adv, np.float32), {k: float(v) for k, v in metrics.items()}

    def rollout(self, prompts: Sequence[TokenIds], prompt_indices: np.ndarray, key: jax.Array) -> tuple[dict, dict]:
        """Sample ``num_generations`` completions per prompt, then ``build_rollout`` (one iteration's data)."""
        cfg = self.config
        p_ids, p_mask = left_pad_prompts([prompts[i] for i in prompt_indices], cfg.max_prompt_length,
                                         cfg.pad_token_id)
        t0 = time.perf_counter()
        out = sampling.generate(self.model, p_ids, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, top_k=cfg.top_k, rng=key, eos_token_id=cfg.eos_token_id,
                                prompt_mask=p_mask, num_samples=cfg.num_generations, pad_token_id=cfg.pad_token_id)
        lengths = np.asarray(out.lengths).astype(np.int64)
        tokens = np.asarray(out.tokens)
        gen_s = time.perf_counter() - t0
        batch, metrics = self.build_rollout(prompts, prompt_indices,
                                            [tokens[i, :lengths[i]].tolist() for i in range(len(lengths))])
        metrics["perf/generation_tokens_per_sec"] = float(lengths.sum()) / max(gen_s, 1e-9)
        metrics["time/generation_s"] = gen_s
        return batch, metrics

    def build_rollout(self, prompts: Sequence[TokenIds], prompt_indices: np.ndarray,
                      completions: Sequence[TokenIds]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The update batch of one iteration from given completions: rewards, advantages, old and reference log-probs.

        ``completions[g * num_generations + j]`` is sample ``j`` of prompt
        ``prompts[prompt_indices[g]]`` (token ids, EOS included when produced,
        at most ``max_new_tokens``). Returns host arrays for ``update`` and the
        rollout's metrics.
        """
        cfg = self.config
        G = cfg.num_generations
        rows = len(prompt_indices) * G
        if len(completions) != rows:
            raise ValueError(f"{len(completions)} completions for {len(prompt_indices)} prompts x {G} generations")
        p_ids, p_mask = left_pad_prompts([prompts[i] for i in prompt_indices], cfg.max_prompt_length,
                                         cfg.pad_token_id)
        prompt_ids, prompt_mask = np.repeat(p_ids, G, 0), np.repeat(p_mask, G, 0)
        lengths = np.asarray([len(c) for c in completions], np.int64)
        if lengths.max() > cfg.max_new_tokens or lengths.min() < 1:
            raise ValueError(f"completion lengths must be in [1, max_new_tokens={cfg.max_new_tokens}]")
        tokens = np.full((rows, cfg.max_new_tokens), cfg.pad_token_id, np.int32)
        for i, c in enumerate(completions):
            tokens[i, :len(c)] = c
        comp_mask = (np.arange(cfg.max_new_tokens)[None, :] < lengths[:, None]).astype(np.int32)
        batch = {
            "input_ids": np.concatenate([prompt_ids, tokens], 1).astype(np.int32),
            "attention_mask": np.concatenate([prompt_mask, comp_mask], 1).astype(np.int32),
            "loss_mask": np.concatenate([np.zeros_like(prompt_mask), comp_mask], 1).astype(np.float32),
        }
        t_reward = time.perf_counter()
        row_prompt = np.repeat(prompt_indices, G)
        completions = [list(c) for c in completions]
        per_func = {}
        if self.reward_model is not None:
            per_func["reward_model"] = (cfg.reward_model_weight, self._chunked(
                lambda b: self._rm_fn(self._rm_params, self._rm_frozen, b["input_ids"], b["attention_mask"]), batch))
        if self.execution_reward is not None:
            ex = np.asarray(self.execution_reward(row_prompt, completions), np.float32)
            if ex.shape != (rows,):
                raise ValueError(f"execution_reward returned shape {ex.shape}, expected ({rows},)")
            per_func["execution"] = (cfg.execution_reward_weight, ex)
        reward_s = time.perf_counter() - t_reward
        metrics = {"time/reward_s": reward_s}
        for name, (_, values) in per_func.items():
            metrics[f"rewards/{name}/mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            metrics[f"rewards/{name}/std"] = float(losses.nanstd(jnp.asarray(values)))
        batch.update(self._sft_tokens(batch, per_func["execution"][1] if "execution" in per_func else None))
        batch["advantages"], adv_metrics = self.advantages({k: v for k, v in per_func.items()})
        metrics.update(adv_metrics)
        metrics["completions/mean_length"] = float(lengths.mean())
        return self._with_logps(batch), metrics

    def _with_logps(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The rollout's old (off-policy updates only) and reference (``beta != 0``) token log-probs added."""
        fwd = {k: batch[k] for k in ("input_ids", "attention_mask", "loss_mask")}
        if not self.on_policy:
            batch["old_logps"] = self._chunked(
                lambda b: self._logps_fn(self.state.params, self.aux, b["input_ids"], b["attention_mask"],
                                         b["loss_mask"]), fwd)
        if self.config.beta != 0.0:
            batch["ref_logps"] = self._chunked(
                lambda b: self._logps_fn(self.ref_params, self.aux, b["input_ids"], b["attention_mask"],
                                         b["loss_mask"]), fwd)
        return batch

    def episode_rollout_batch(self, prompt_indices: np.ndarray, key: jax.Array) -> tuple[dict, dict]:
        """The caller's episodes from the current policy, then ``build_episode_rollout``."""
        t0 = time.perf_counter()
        ep = self.episode_rollout(self.model, prompt_indices, key)
        gen_s = time.perf_counter() - t0
        batch, metrics = self.build_episode_rollout(len(prompt_indices), ep)
        metrics["time/generation_s"] = gen_s  # sampling and executing every turn (the rollout interleaves them)
        return batch, metrics

    def build_episode_rollout(self, num_prompts: int, ep: EpisodeRollout) -> tuple[dict[str, np.ndarray],
                                                                                  dict[str, float]]:
        """The update batch of one iteration of episodes: every turn one row, padded to ``rollout_rows``.

        Rewards: the weighted reward-model score and execution reward of an episode's latest program after turn
        t (a sequence's own values); advantages group-relative over the G episodes of a prompt (``advantages``),
        of the final rewards, or per turn with ``turn_rewards``. With ``repair_fixes`` k > 1 a repair turn's k
        fixes are a group of their own: their advantages are relative to each other (their own programs'
        rewards); the episode's chain (its reward after each turn) follows fix 0. Padding rows repeat the
        shortest sequence with no scored token.
        """
        cfg = self.config
        G, T, k = cfg.num_generations, cfg.max_turns, cfg.repair_fixes
        n_eps, n_seq = num_prompts * G, len(ep.completions)
        episodes, turns = np.asarray(ep.episodes, np.int64), np.asarray(ep.turns, np.int64)
        fixes = np.zeros(n_seq, np.int64) if ep.fixes is None else np.asarray(ep.fixes, np.int64)
        if (not (len(ep.prompts) == n_seq == len(episodes) == len(turns) == len(fixes))
                or n_seq > cfg.rollout_rows):
            raise ValueError(f"episode rollout: {len(ep.prompts)} prompts, {n_seq} completions, {len(episodes)} "
                             f"episode ids, {len(turns)} turns, {len(fixes)} fix indices (at most "
                             f"{cfg.rollout_rows} sequences)")
        if episodes.min() < 0 or episodes.max() >= n_eps or turns.min() < 1 or turns.max() > T:
            raise ValueError(f"episode rollout: episode ids must be in [0, {n_eps}) and turns in [1, {T}]")
        # Sequences by (episode, turn, fix): each turn t >= 2 an episode reached holds exactly the fixes 0 .. k-1.
        by_turn = np.lexsort((fixes, turns, episodes))
        slot = np.stack([episodes[by_turn], turns[by_turn]], 1)
        starts = np.flatnonzero(np.concatenate([[True], (slot[1:] != slot[:-1]).any(1)]))
        for (e, t), got in zip(slot[starts], np.split(fixes[by_turn], starts[1:])):
            if got.tolist() != list(range(1 if t == 1 else k)):
                raise ValueError(f"episode rollout: episode {e} turn {t} has fixes {got.tolist()}; expected "
                                 + ("one turn-1 sequence (fix 0)" if t == 1 else f"fixes 0 .. {k - 1}"))
        latest = np.full((n_eps, T), -1, np.int64)  # [episode, t-1] -> the sequence of its program after turn t
        chain = fixes == 0
        for i in by_turn[chain[by_turn]]:  # fix 0 of each turn, turns ascending within an episode
            latest[episodes[i], turns[i] - 1:] = i
        if (latest[:, 0] < 0).any():
            raise ValueError("episode rollout: every episode needs a turn-1 sequence")
        rows = cfg.rollout_rows
        imitations = list(ep.imitations or [])[:rows - n_seq] if cfg.sft_weight > 0 else []
        prompts = list(ep.prompts) + [list(p) for p, _ in imitations]
        completions = list(ep.completions) + [list(c) for _, c in imitations]
        lengths = np.asarray([len(c) for c in completions], np.int64)  # the rollout's sequences, then imitations
        if lengths.max() > cfg.max_new_tokens or lengths.min() < 1:
            raise ValueError(f"completion lengths must be in [1, max_new_tokens={cfg.max_new_tokens}]")
        n_filled = len(completions)
        # Padding rows copy the shortest sequence (they score nothing; short, they widen no trimmed mini-batch).
        shortest = int(np.argmin([len(p) + len(c) for p, c in zip(ep.prompts, ep.completions)]))
        fill = np.concatenate([np.arange(n_filled), np.full(rows - n_filled, shortest, np.int64)])
        p_ids, p_mask = left_pad_prompts([prompts[i] for i in fill], cfg.max_prompt_length, cfg.pad_token_id)
        tokens = np.full((rows, cfg.max_new_tokens), cfg.pad_token_id, np.int32)
        for r, i in enumerate(fill):
            tokens[r, :lengths[i]] = completions[i]
        comp_mask = (np.arange(cfg.max_new_tokens)[None, :] < lengths[fill][:, None]).astype(np.int32)
        real = (np.arange(rows) < n_seq)[:, None]
        batch = {
            "input_ids": np.concatenate([p_ids, tokens], 1).astype(np.int32),
            "attention_mask": np.concatenate([p_mask, comp_mask], 1).astype(np.int32),
            "loss_mask": np.concatenate([np.zeros_like(p_mask), comp_mask * real], 1).astype(np.float32),
        }
        t_reward = time.perf_counter()
        per_seq = {}
        if self.reward_model is not None:
            per_seq["reward_model"] = (cfg.reward_model_weight, self._chunked(
                lambda b: self._rm_fn(self._rm_params, self._rm_frozen, b["input_ids"], b["attention_mask"]),
                {k: batch[k] for k in ("input_ids", "attention_mask")})[:n_seq])
        if ep.execution is not None:
            ex = np.asarray(ep.execution, np.float32)
            if ex.shape != (n_seq,):
                raise ValueError(f"episode rollout: execution rewards of shape {ex.shape}, expected ({n_seq},)")
            per_seq["execution"] = (cfg.execution_reward_weight, ex)
        batch.update(self._sft_tokens(batch, per_seq["execution"][1] if "execution" in per_seq else None, turns,
                                      slice(n_seq, n_filled)))
        if not per_seq:
            raise ValueError("episode rollout without execution rewards and no reward model: nothing to learn from")
        # Group-relative advantages of the episodes' rewards after each turn (the episode order is group-major).
        after = [self.advantages({k: (w, v[latest[:, t]]) for k, (w, v) in per_seq.items()}) for t in range(T)]
        final_adv, metrics = after[-1]
        adv = np.stack([a for a, _ in after], 1)[episodes, turns - 1] if cfg.turn_rewards else final_adv[episodes]
        if k > 1 and (turns > 1).any():  # each repair turn's k fixes, contiguous in by_turn order: a group each
            repairs = by_turn[turns[by_turn] > 1]
            adv[repairs], fix_metrics = self.advantages({n: (w, v[repairs]) for n, (w, v) in per_seq.items()}, k)
            metrics["episodes/repair_reward"] = fix_metrics["reward"]
            metrics["episodes/repair_frac_reward_zero_std"] = fix_metrics["frac_reward_zero_std"]
        batch["advantages"] = np.concatenate([adv, np.zeros(rows - n_seq, np.float32)]).astype(np.float32)
        metrics["time/reward_s"] = time.perf_counter() - t_reward
        for name, (_, values) in per_seq.items():
            final = values[latest[:, -1]]
            metrics[f"rewards/{name}/mean"] = float(np.nanmean(final)) if np.isfinite(final).any() else float("nan")
            metrics[f"rewards/{name}/std"] = float(losses.nanstd(jnp.asarray(final)))
        metrics["completions/mean_length"] = float(lengths[:n_seq].mean())
        metrics["episodes/mean_turns"] = float(chain.sum()) / n_eps
        if cfg.sft_weight > 0:
            metrics["episodes/imitations"] = float(len(imitations))
        return self._with_logps(batch), metrics

    # ------------------------------------------------------------------ the loop
    def update(self, batch: dict[str, np.ndarray], *, per_update: bool = False):
        """``ppo_epochs`` passes over a ``build_rollout`` batch in shuffled mini-batches of ``batch_size``.

        Returns the metrics averaged over the updates (``clip_ratio/low_min``
        / ``high_max`` as min / max), or each update's when ``per_update``.
        """
        cfg = self.config
        n_rows = batch["input_ids"].shape[0]
        updates = n_rows // cfg.batch_size
        # dapo's divisor: the completion tokens of the whole rollout, per optimizer update (TRL's
        # num_items_in_batch / steps per generation), per micro-batch since accumulation averages them.
        gen_tokens = max(float(batch["loss_mask"][:, 1:].sum()), 1.0)
        batch = dict(batch, normalizer=np.full((n_rows,), gen_tokens / updates / cfg.optim.grad_accum_steps,
                                               np.float32))
        out = []
        real = batch["loss_mask"][:, 1:].sum(1) > 0
        for epoch in range(cfg.ppo_epochs):
            rng = np.random.default_rng([cfg.seed, self.step, epoch])
            order = rng.permutation(n_rows)
            if cfg.group_by_length:
                order = self._length_grouped(order, real, batch["attention_mask"], rng)
            elif not real.all():  # an episode rollout's padding: dealt out so every mini-batch has real rows
                order = np.concatenate([order[real[order]], order[~real[order]]])
                order = order.reshape(cfg.batch_size, updates).T.reshape(-1)
            for mb in range(updates):
                sel = order[mb * cfg.batch_size:(mb + 1) * cfg.batch_size]
                out.append(self.train_step(trim_padding({k: v[sel] for k, v in batch.items()},
                                                        self.length_multiple)))
        out = [{k: float(np.asarray(v)) for k, v in m.items()} for m in jax.device_get(out)]
        if per_update:
            return out
        row = {}
        for k in out[0]:
            vals = [m[k] for m in out]
            if k in ("train/skipped_steps", "train/learning_rate"):
                row[k] = vals[-1]
            elif k == "clip_ratio/low_min":
                row[k] = float(np.min(vals))
            elif k == "clip_ratio/high_max":
                row[k] = float(np.max(vals))
            else:
                row[k] = float(np.mean(vals))
        return row

    def _length_grouped(self, order: np.ndarray, real: np.ndarray, attention_mask: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
        """``order`` (a random permutation of the rollout's rows) regrouped for ``group_by_length``: the real rows
        sorted by length (ties in ``order``'s order) and split into one near-equal run per mini-batch, padding rows
        filling each up to ``batch_size``, the mini-batches in random order. Every mini-batch keeps a real row."""
        bs = self.config.batch_size
        updates = len(order) // bs
        prompt_len, completion_len = self._lengths(attention_mask)
        rows = order[real[order]]
        rows = rows[np.lexsort((completion_len[rows], prompt_len[rows]))]  # lexsort is stable: ties keep order
        pads, at, groups = order[~real[order]], 0, []
        for chunk in np.array_split(rows, updates):
            groups.append(np.concatenate([chunk, pads[at:at + bs - len(chunk)]]))
            at += bs - len(chunk)
        return np.concatenate([groups[i] for i in rng.permutation(updates)])

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
        base_key = jax.random.PRNGKey(cfg.seed + 1)

        def one_iteration(it: int):
            idx = stream_indices(len(prompts), it * cfg.prompts_per_step, cfg.prompts_per_step, cfg.seed, cfg.shuffle)
            key = jax.random.fold_in(base_key, self.step)
            batch, row = (self.rollout(prompts, idx, key) if self.episode_rollout is None
                          else self.episode_rollout_batch(idx, key))
            t_update = time.perf_counter()
            row.update(self.update(batch))
            row["time/update_s"] = time.perf_counter() - t_update
            n_rows = batch["input_ids"].shape[0]
            return (row, self.count_tokens(batch) * cfg.ppo_epochs,
                    self.flops_per_example(batch) * n_rows * cfg.ppo_epochs)

        return self._loop(start, num_iterations, upi, one_iteration, "reward")

