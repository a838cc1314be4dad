"""One function per method: the policy at the start of an iteration in, the trained policy out.

Each iteration's trainers start from the weights they are given and checkpoint under that iteration's
directory (``<method>/iter_<k>/train``), which only a restart of the same iteration reads. The learning-rate
schedule spans all iterations: iteration k's trainer starts counting at the updates of the iterations before
it. Optimizer moments start fresh each iteration (each iteration is a new fit on new data).
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from ieta_jax.experiment import library_configs
from ieta_jax.experiment.policy import LocalPolicy
from ieta_jax.experiment.rollout import stable_seed
from ieta_jax.experiment.signals import episode_rollout_fn, execution_reward_fn
from ieta_jax.experiment.start import Run


@dataclasses.dataclass
class Trained:
    policy: LocalPolicy
    record: dict                      # per-step losses etc., stored in train.json
    reward_model: object = None       # RLAIF: the reward model after this iteration


def _continue_schedule(trainer, step: int) -> None:
    """A fresh trainer counts its updates from ``step`` (the updates of earlier iterations); a trainer that
    restored this iteration's own checkpoint already stands past it."""
    if trainer.step == 0 and step > 0:
        trainer.state = trainer.state.replace(step=jax.device_put(jnp.int32(step), trainer.state_shardings.step))


def _fit(trainer, data, steps: int, what: str) -> list[dict]:
    rows = trainer.fit(data, steps)
    if len(rows) != steps:
        raise RuntimeError(f"{what} fit returned {len(rows)} rows, expected {steps}")
    return rows


def train_dpo(run: Run, policy: LocalPolicy, pairs: list, iteration: int, it_dir: str) -> Trained:
    """DPO on this iteration's pairs; the reference is ``policy`` (the policy at the start of the iteration)."""
    from ieta_jax.trainers import DPOTrainer

    c = run.config
    if not pairs:
        return Trained(policy, {"loss": [], "accuracy": [], "learning_rate": []})
    trainer = DPOTrainer(policy.model, library_configs.dpo_config(c, policy.tokenizer.pad_token_id), mesh=run.mesh,
                         workdir=os.path.join(it_dir, "train"), writer=run.writers("dpo"))
    _continue_schedule(trainer, (iteration - 1) * c.train_steps)
    rows = _fit(trainer, pairs, c.train_steps, f"DPO iteration {iteration}")
    trained = policy.with_model(trainer.model)
    trainer.close()
    return Trained(trained, {"loss": [r["train/loss"] for r in rows],
                             "accuracy": [r.get("rewards/accuracies") for r in rows],
                             "learning_rate": [r["train/learning_rate"] for r in rows]})


def train_rlaif(run: Run, policy: LocalPolicy, reward_model, reference, pairs: list, iteration: int,
                it_dir: str) -> Trained:
    """The reward model continues on this iteration's pairs, then group-relative RL of ``policy`` against it
    (plus the weighted execution reward), with the KL to ``reference`` (the starting policy); with
    ``max_turns > 1`` over repair episodes (the final program's reward, every turn trained)."""
    from ieta_jax.trainers import RewardTrainer, RLTrainer

    c = run.config
    pad = policy.tokenizer.pad_token_id
    rm_rows = []
    if pairs:
        rm_trainer = RewardTrainer(reward_model, library_configs.reward_config(c, pad), mesh=run.mesh,
                                   workdir=os.path.join(it_dir, "reward_train"), writer=run.writers("rlaif_reward_model"))
        _continue_schedule(rm_trainer, (iteration - 1) * c.rlaif.reward_steps)
        rm_rows = _fit(rm_trainer, pairs, c.rlaif.reward_steps, f"reward-model iteration {iteration}")
        reward_model = rm_trainer.model
        rm_trainer.close()
    # The prompts in an iteration-specific order, the same again when this iteration is resumed. The execution
    # reward gets the tasks in that same order: the trainer passes indices into the fit's prompt list.
    order = np.random.default_rng(stable_seed(c.seed, "rl_prompts", iteration)).permutation(len(run.train_tasks))
    tasks = [run.train_tasks[i] for i in order]
    prompts = [policy.prompt_ids(policy.prompt(t)) for t in tasks]
    # Execution rewards: in the reward (weighted), and the selection of the programs rlaif.sft_weight imitates.
    execution = c.rlaif.execution_reward_weight > 0 or c.rlaif.sft_weight > 0
    # max_turns > 1: G repair episodes per task, every turn's tokens trained (signals.episode_rollout_fn).
    episodes = episode_rollout_fn(run, policy, tasks, execution=execution) if c.max_turns > 1 else None
    exec_fn = execution_reward_fn(run, policy, tasks) if execution and episodes is None else None
    trainer = RLTrainer(policy.model, library_configs.rl_config(c, pad, policy.tokenizer.eos_token_id),
                        reward_model=reward_model, execution_reward=exec_fn, episode_rollout=episodes,
                        ref_model=reference, mesh=run.mesh, workdir=os.path.join(it_dir, "train"),
                        writer=run.writers("rlaif"))
    _continue_schedule(trainer, (iteration - 1) * c.train_steps * library_configs.rl_updates_per_step(c))
    rows = _fit(trainer, prompts, c.train_steps, f"RL iteration {iteration}")
    trained = policy.with_model(trainer.model)
    trainer.close()
    return Trained(trained, {"reward_model_loss": [x["train/loss"] for x in rm_rows],
                             "reward_model_accuracy": [x.get("accuracy") for x in rm_rows],
                             "reward_model_learning_rate": [x["train/learning_rate"] for x in rm_rows],
                             "learning_rate": [x["train/learning_rate"] for x in rows],
                             "loss": [x["train/loss"] for x in rows], "reward": [x.get("reward") for x in rows],
                             "kl": [x.get("kl") for x in rows]}, reward_model=reward_model)
