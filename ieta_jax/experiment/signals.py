"""Feedback: sandbox verdicts -> preference pairs (DPO, reward model) and execution rewards (RL)."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ieta_jax import distributed, feedback
from ieta_jax.experiment.policy import LocalPolicy
from ieta_jax.experiment.rollout import SampleSet, request
from ieta_jax.experiment.start import Run


def preference_pairs(run: Run, samples: SampleSet, policy: LocalPolicy) -> tuple[list, list]:
    """(trainer ``PreferencePair``s as token ids, the ``feedback.Pair`` records they came from); ``samples`` is a
    ``SampleSet`` or an ``episodes.EpisodeSet`` (pairs at every turn, each pair from one prompt)."""
    from ieta_jax.trainers import PreferencePair

    c = run.config
    tasks = {t.task_id: t for t in run.train_tasks}
    token_pairs, records = [], []
    # Samples that share one prompt: a task's turn-1 samples, or the fixes of one failing program + feedback.
    for tid, prompt_text, rows in samples.pair_groups():
        pairs = feedback.build_pairs(tasks[tid], [r["program"] for r in rows], [r["result"] for r in rows],
                                     max_pairs=c.dpo.max_pairs_per_task, completions=[r["completion"] for r in rows])
        prompt = policy.prompt_ids(policy.prompt(tasks[tid]) if prompt_text is None else prompt_text)
        for p in pairs:
            chosen = policy.completion_ids(p.chosen, c.max_new_tokens)
            rejected = policy.completion_ids(p.rejected, c.max_new_tokens)
            if len(chosen) < 2 or len(rejected) < 2:
                continue
            token_pairs.append(PreferencePair(prompt, chosen, rejected))
            records.append(p if prompt_text is None else dataclasses.replace(p, prompt=prompt_text))
    return token_pairs, records


def execution_reward_fn(run: Run, policy: LocalPolicy, tasks: list) -> Callable[[np.ndarray, list], list[float]]:
    """For the RL trainer: run each generated completion in the sandbox (process 0), reward by
    ``feedback.execution_reward``; every process gets the same rewards."""
    from ieta_jax.data import completions as comp_lib

    chat = run.config.prompt_format == "chat"

    def execute(prompt_indices, completions) -> list[float]:
        futures = []
        for k, (pi, ids) in enumerate(zip(prompt_indices, completions)):
            t = tasks[int(pi)]
            text = policy.tokenizer.decode(ids, skip_special_tokens=True)
            completion = comp_lib.completion_from_sample(text, t, chat=chat)
            futures.append(run.executor.submit(request(run, t, completion, f"rl#{k}", trace=False)))
        return [float(feedback.execution_reward(f.result())) for f in futures]

    return lambda prompt_indices, completions: distributed.on_primary(lambda: execute(prompt_indices, completions))


def sample_stats(samples: SampleSet) -> dict:
    statuses = [r["result"]["status"] for r in samples.rows]
    return {"num": len(statuses), "pass_rate": sum(s == "passed" for s in statuses) / max(1, len(statuses))}
