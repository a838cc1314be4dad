"""Feedback: sandbox verdicts -> preference pairs (DPO, reward model) and execution rewards (RL); for RLAIF
with ``rlaif.feedback`` judge/both, an AI judge decides the pairs (or the ties execution leaves)."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from ieta_jax import distributed, feedback
from ieta_jax.experiment.policy import LocalPolicy
from ieta_jax.experiment.rollout import SampleSet, request
from ieta_jax.experiment.start import Run, uses_judge


def preference_pairs(run: Run, samples: SampleSet, policy: LocalPolicy) -> tuple[list, list]:
    """(trainer ``PreferencePair``s as token ids, the ``feedback.Pair`` records they came from); ``samples`` is a
    ``SampleSet`` or an ``episodes.EpisodeSet`` (pairs at every turn, each pair from one prompt)."""
    c = run.config
    tasks = {t.task_id: t for t in run.train_tasks}
    pairs = []
    # Samples that share one prompt: a task's turn-1 samples, or the fixes of one failing program + feedback.
    for tid, prompt_text, rows in samples.pair_groups(c.repair_relabel):
        group = feedback.build_pairs(tasks[tid], [r["program"] for r in rows], [r["result"] for r in rows],
                                     max_pairs=max_pairs(c, prompt_text), completions=[r["completion"] for r in rows])
        pairs += _with_prompt(group, prompt_text)
    return _tokenized(run, pairs, policy)


def max_pairs(c, prompt_text: str | None) -> int:
    """Pairs kept from one group: a task's turn-1 samples, or (a repair prompt) one failing program's fixes."""
    return c.dpo.max_pairs_per_task if prompt_text is None else c.dpo.max_repair_pairs


def _with_prompt(pairs: list, prompt_text: str | None) -> list:
    """A repair group's pairs carry the repair prompt they were sampled from (turn-1 pairs keep the task's)."""
    return pairs if prompt_text is None else [dataclasses.replace(p, prompt=prompt_text) for p in pairs]


def _tokenized(run: Run, pairs: list, policy: LocalPolicy) -> tuple[list, list]:
    """(trainer ``PreferencePair``s, the ``feedback.Pair``s kept): pairs with a completion under 2 tokens
    (EOS alone) are dropped. A pair whose ``prompt`` is its task's own is prompted as turn 1 (the policy's prompt
    format), any other prompt (a repair turn's) as it stands."""
    from ieta_jax.trainers import PreferencePair

    c = run.config
    tasks = {t.task_id: t for t in run.train_tasks}
    prompts: dict[tuple, list[int]] = {}
    token_pairs, records = [], []
    for p in pairs:
        task = tasks[p.task_id]
        key = (p.task_id, p.prompt)
        if key not in prompts:
            prompts[key] = policy.prompt_ids(policy.prompt(task) if p.prompt == task.prompt else p.prompt)
        chosen = policy.completion_ids(p.chosen, c.max_new_tokens)
        rejected = policy.completion_ids(p.rejected, c.max_new_tokens)
        if len(chosen) < 2 or len(rejected) < 2:
            continue
        token_pairs.append(PreferencePair(prompts[key], chosen, rejected))
        records.append(p)
    return token_pairs, records


def make_judge(run: Run):
    """The AI judge of RLAIF (``config.rlaif.feedback`` judge/both) on process 0, its answers cached in
    ``<workdir>/api_cache/judge``; None when no method needs it and on the other processes."""
    c = run.config
    if not uses_judge(c) or not distributed.is_primary():
        return None
    from ieta_jax import api

    return api.judge.Judge(c.rlaif.judge, c.rlaif.judge_model, cache_dir=run.workdir.path("api_cache", "judge"),
                           swap=c.rlaif.judge_swap, max_concurrency=c.api.max_concurrency)


def iteration_pairs(run: Run, method: str, stage: str, samples: SampleSet, policy: LocalPolicy
                    ) -> tuple[list, list, dict | None]:
    """This iteration's pairs: ``preference_pairs``, or for RLAIF with judge feedback the pairs the judge (and
    execution) decided, every judgement written to ``<stage>/judgements.jsonl``, and the judge summary
    (``api.judge.summarize``; None without a judge). Judge answers are cached, so a resumed run asks nothing."""
    c = run.config
    if method != "rlaif" or c.rlaif.feedback == "execution":
        return (*preference_pairs(run, samples, policy), None)
    from ieta_jax.api import judge as judge_lib

    tasks = {t.task_id: t for t in run.train_tasks}

    def judge_all() -> dict:  # process 0 asks the judge; everyone gets pairs, judgements and the summary
        pairs, judgements = [], []
        for tid, prompt_text, rows in samples.pair_groups(c.repair_relabel):
            p, js = judge_lib.judged_pairs(run.judge, tasks[tid], [r["program"] for r in rows],
                                           [r["result"] for r in rows], feedback_mode=c.rlaif.feedback,
                                           completions=[r["completion"] for r in rows],
                                           max_pairs=max_pairs(c, prompt_text), audit=c.rlaif.judge_audit)
            pairs += _with_prompt(p, prompt_text)
            judgements += js
        return {"pairs": [p.to_dict() for p in pairs], "judgements": [j.to_dict() for j in judgements],
                "summary": judge_lib.summarize(judgements)}

    out = distributed.on_primary(judge_all)
    run.workdir.write_jsonl(os.path.join(stage, "judgements.jsonl"), out["judgements"])
    token_pairs, records = _tokenized(run, [feedback.Pair(**d) for d in out["pairs"]], policy)
    return token_pairs, records, out["summary"]


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


def episode_rollout_fn(run: Run, policy: LocalPolicy, tasks: list, *, execution: bool):
    """For the RL trainer with ``max_turns > 1`` (``trainers.rl.EpisodeRolloutFn``): ``num_samples`` repair
    episodes of each prompt's task (``episodes.episodes_stage``, not stored: the trainer's checkpoint makes the
    iteration resumable), ``rlaif.repair_fixes`` fixes per failing program, every fix of every turn one sequence:
    the prompt it was sampled from and its completion as the trainers tokenize completions (``LocalPolicy.completion_ids``); with
    ``rlaif.sft_weight``, relabelled imitations too (``relabelled``). ``execution``: each sequence's execution
    reward (``feedback.execution_reward`` of its hidden-test result). ``tasks[i]`` is the task of the fit's
    prompt ``i``; the sampling seed comes from the trainer's key, so a resumed iteration samples the same."""
    import jax

    from ieta_jax.experiment import episodes as episodes_lib
    from ieta_jax.trainers.rl import EpisodeRollout

    c = run.config

    def rollout(model, prompt_indices, key) -> EpisodeRollout:
        pol = policy.with_model(model)
        chunk, seen = [], {}
        for i in prompt_indices:  # a task drawn twice in one step (across an epoch boundary) gets its own ids
            t = tasks[int(i)]
            seen[t.task_id] = seen.get(t.task_id, 0) + 1
            chunk.append(t if seen[t.task_id] == 1 else dataclasses.replace(t, task_id=f"{t.task_id}@{seen[t.task_id]}"))
        seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
        es = episodes_lib.episodes_stage(run, None, pol, chunk, c.num_samples, temperature=c.temperature, seed=seed,
                                         desc="rl episodes", fixes=c.rlaif.repair_fixes)
        position = {t.task_id: g for g, t in enumerate(chunk)}
        by_id = {t.task_id: t for t in chunk}
        prompts, completions, eps, turns, fixes, ex = [], [], [], [], [], []
        for turn, rows in enumerate(es.turns, start=1):
            for r in rows:
                task = by_id[r["task_id"]]
                prompts.append(pol.prompt_ids(pol.prompt(task) if turn == 1 else r["prompt"]))
                completions.append(pol.completion_ids(r["completion"], c.max_new_tokens))
                eps.append(position[r["task_id"]] * c.num_samples + r["sample"])
                turns.append(turn)
                fixes.append(r.get("fix", 0))
                ex.append(float(feedback.execution_reward(r["result"])))
        return EpisodeRollout(prompts, completions, np.asarray(eps), np.asarray(turns),
                              np.asarray(ex, np.float32) if execution else None, np.asarray(fixes),
                              imitations=relabelled(es, pol) if c.rlaif.sft_weight > 0 else None)

    def relabelled(es, pol) -> list:
        """``repair_relabel`` of a task's distinct passing programs (any turn of this rollout) under each of its
        repair prompts, for ``rlaif.sft_weight`` (muCode's relabelling, as the repair pairs have it)."""
        passing = es.passing_by_task()
        out = []
        for rows in es.turns[1:]:
            for r in rows:
                if r.get("fix", 0) == 0:
                    others = [p for p in passing.get(r["task_id"], []) if p["program"] != r["program"]]
                    out += [(pol.prompt_ids(r["prompt"]), pol.completion_ids(p["completion"], c.max_new_tokens))
                            for p in others[:c.repair_relabel]]
        return out

    return rollout


def sample_stats(samples: SampleSet) -> dict:
    statuses = [r["result"]["status"] for r in samples.rows]
    return {"num": len(statuses), "pass_rate": sum(s == "passed" for s in statuses) / max(1, len(statuses))}
