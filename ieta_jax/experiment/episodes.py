"""Repair episodes: up to ``config.max_turns`` turns per sample, and their per-turn metrics.

Turn 1 is the rollout of the task prompts (``rollout.samples_stage``). Every program runs against the task's
public tests (the feedback) and its hidden tests (the score), two sandbox requests submitted together. An
episode whose latest program failed its public tests gets another turn: the prompt is
``repair.repair_prompt(task, that program, repair.render_feedback(its public-test result))``, and the policy
samples ``fixes`` programs for it (evaluation: 1; training: ``repair_num_samples``, so that two fixes of the
same failing program make a repair pair); the episode continues with the first fix. An episode that passed
its public tests, or whose task has none, ends. Metrics and rewards come only from the hidden tests.

Files: turn 1 at ``rel`` (unchanged from the one-turn rollout), turn t at ``<rel stem>.turn_<t>.jsonl``; a
turn's rows carry ``turn``, ``sample`` (the episode), ``fix`` and the ``prompt`` they were sampled from.
"""
from __future__ import annotations

import collections
import dataclasses

from ieta_jax import evaluation, repair
from ieta_jax.experiment.policy import Policy
from ieta_jax.experiment.rollout import group_by_task, sample_and_execute, samples_stage, stable_seed
from ieta_jax.experiment.start import Run


@dataclasses.dataclass
class EpisodeSet:
    """The rows of every turn: ``turns[0]`` the turn-1 rollout (task-major), ``turns[t-1]`` the repairs of turn t."""

    turns: list[list[dict]]
    time_s: dict[str, float]

    @property
    def rows(self) -> list[dict]:
        """Turn 1's rows (what a one-turn rollout held)."""
        return self.turns[0]

    def by_task(self) -> dict[str, list[dict]]:
        return group_by_task(self.rows)

    def after(self, turn: int) -> list[dict]:
        """Per episode (turn-1 order) its latest program up to ``turn``: the row that episode ends with there."""
        latest = {(r["task_id"], r["sample"]): r for r in self.turns[0]}
        for rows in self.turns[1:turn]:
            for r in rows:
                if r["fix"] == 0:
                    latest[(r["task_id"], r["sample"])] = r
        return list(latest.values())

    def passing_by_task(self) -> dict[str, list[dict]]:
        """Per task, its rows whose programs passed the hidden tests, one per distinct program, turns in order."""
        passing: dict[str, list[dict]] = {}
        for rows in self.turns:
            for r in rows:
                if r["result"]["status"] == "passed" and all(r["program"] != p["program"]
                                                             for p in passing.get(r["task_id"], [])):
                    passing.setdefault(r["task_id"], []).append(r)
        return passing

    def pair_groups(self, relabel: int = 0) -> list[tuple[str, str | None, list[dict]]]:
        """(task_id, prompt text or None = the task's own prompt, rows) of the samples that share one prompt:
        turn 1 per task, a repair turn per failing program (its fixes).

        ``relabel`` > 0 (muCode-style relabelling, Jain et al. 2025, "Multi-Turn Code Generation Is One-Step
        Recoverable"): a repair group also holds the failing program it shows (repeating it is a wrong answer)
        and up to ``relabel`` distinct programs of the same task that passed the hidden tests at any turn (a
        correct program is the right answer to every turn's prompt), so a failing program gets repair pairs
        even when none of its own fixes passed. Every program keeps its own hidden-test verdict."""
        groups = [(tid, None, rows) for tid, rows in self.by_task().items()]
        passing = self.passing_by_task() if relabel else {}
        for t, rows in enumerate(self.turns[1:], start=2):
            shown = {(r["task_id"], r["sample"]): r for r in self.after(t - 1)} if relabel else {}
            by_prompt: dict[tuple, list[dict]] = {}
            for r in rows:
                by_prompt.setdefault((r["task_id"], r["sample"]), []).append(r)
            for (tid, ep), rs in by_prompt.items():
                extra = [shown[(tid, ep)], *passing.get(tid, [])[:relabel]] if relabel else []
                groups.append((tid, rs[0]["prompt"], rs + extra))
        return groups


def needs_repair(row: dict) -> bool:
    """Whether an episode gets another turn: its latest program ran against public tests and failed them."""
    pub = row.get("public_result")
    return pub is not None and pub["status"] != "passed"


def repair_prompt_for(run: Run, policy: Policy, task, row: dict) -> str:
    """The next turn's prompt after ``row``'s program failed its public tests (chat per ``prompt_format``).

    A policy that formats its own prompts (e.g. behind an API without a local tokenizer) may define
    ``repair_prompt(task, program, feedback) -> str``; it gets the rendered feedback."""
    tokenizer = getattr(policy, "tokenizer", None)
    markers = list(getattr(tokenizer, "all_special_tokens", None) or [])
    feedback = repair.render_feedback(row["public_result"], row["program"], task.public_test, markers=markers)
    own = getattr(policy, "repair_prompt", None)
    if own is not None:
        return own(task, row["program"], feedback)
    return repair.repair_prompt(task, row["program"], feedback, tokenizer,
                                chat=run.config.prompt_format == "chat")


def turn_rel(rel: str, turn: int) -> str:
    stem = rel[:-len(".jsonl")] if rel.endswith(".jsonl") else rel
    return f"{stem}.turn_{turn}.jsonl"


def episodes_stage(run: Run, rel: str | None, policy: Policy, tasks: list, n: int, *, temperature: float, seed: int,
                   desc: str, fixes: int = 1) -> EpisodeSet:
    """``n`` episodes per task of up to ``config.max_turns`` turns; each turn is stored (and read back on a
    restart) on its own (``rel=None``: nothing stored). ``max_turns=1`` is exactly the one-turn rollout (no
    public-test runs)."""
    max_turns = run.config.max_turns
    first = samples_stage(run, rel, policy, tasks, n, temperature=temperature, seed=seed, desc=desc,
                          public=max_turns > 1)
    turns, time_s = [first.rows], dict(first.time_s)
    by_id = {t.task_id: t for t in tasks}
    for turn in range(2, max_turns + 1):
        failing = [r for r in EpisodeSet(turns, time_s).after(turn - 1) if needs_repair(r)]
        if not failing:
            break
        rel_t = rel and turn_rel(rel, turn)
        rows, t_time = ((None, None) if rel is None else
                        (run.workdir.read_jsonl(rel_t), run.workdir.read_json(rel_t + ".time.json")))
        if rows is None or t_time is None:
            prompts = [repair_prompt_for(run, policy, by_id[r["task_id"]], r) for r in failing]
            ss = sample_and_execute(run, policy, [by_id[r["task_id"]] for r in failing], fixes,
                                    temperature=temperature, seed=stable_seed(seed, "turn", turn),
                                    desc=f"{desc} turn {turn}", prompts=prompts, public=turn < max_turns)
            # sample_and_execute's rows: ``fixes`` per failing episode, in order.
            rows = [{**row, "sample": ep["sample"], "fix": row["sample"], "turn": turn, "prompt": prompt}
                    for i, (ep, prompt) in enumerate(zip(failing, prompts))
                    for row in ss.rows[i * fixes:(i + 1) * fixes]]
            t_time = ss.time_s
            if rel is not None:
                run.workdir.write_jsonl(rel_t, rows)
                run.workdir.write_json(rel_t + ".time.json", t_time)
        turns.append(rows)
        for k, v in t_time.items():
            time_s[k] = time_s.get(k, 0.0) + v
    return EpisodeSet(turns, time_s)


def summarize_episodes(episodes: EpisodeSet, ks, max_turns: int) -> dict:
    """Metrics of the episodes from hidden-test verdicts only.

    ``pass@k``, ``execution_rate``, ``error_frequencies``, ``error_types``: the final program of each episode
    (after the last turn; with one turn exactly the one-turn metrics). ``turn_<t>/pass@k``,
    ``turn_<t>/execution_rate``, ``turn_<t>/error_frequencies``: the latest program of each episode up to turn t.
    ``repair_rate`` (``max_turns > 1``): of the episodes failing the hidden tests at turn 1, the fraction that
    pass them after the last turn (None when none failed); ``num_turn_1_failures`` its denominator;
    ``repair_rate_stderr`` its standard error with the tasks as clusters (``evaluation.ratio_stderr``).
    """
    def verdicts(rows):
        return {tid: [r["result"] for r in rs] for tid, rs in group_by_task(rows).items()}

    final = evaluation.summarize(verdicts(episodes.after(max_turns)), ks=ks)
    out = {**final["pass_at_k"], "execution_rate": final["execution_rate"],
           "error_frequencies": final["error_frequencies"], "error_types": final["error_types"],
           "num_samples": final["num_samples"], "num_tasks": final["num_tasks"]}
    for t in range(1, max_turns + 1):
        s = evaluation.summarize(verdicts(episodes.after(t)), ks=ks)
        out.update({f"turn_{t}/{k}": v for k, v in s["pass_at_k"].items()})
        out[f"turn_{t}/execution_rate"] = s["execution_rate"]
        out[f"turn_{t}/error_frequencies"] = s["error_frequencies"]
    if max_turns > 1:
        failed = {(r["task_id"], r["sample"]) for r in episodes.after(1) if r["result"]["status"] != "passed"}
        fixed = [r for r in episodes.after(max_turns)
                 if (r["task_id"], r["sample"]) in failed and r["result"]["status"] == "passed"]
        out["repair_rate"] = len(fixed) / len(failed) if failed else None
        out["num_turn_1_failures"] = len(failed)
        tasks = list(group_by_task(episodes.after(1)))
        failed_per_task = collections.Counter(tid for tid, _ in failed)
        fixed_per_task = collections.Counter(r["task_id"] for r in fixed)
        out["repair_rate_stderr"] = evaluation.ratio_stderr([fixed_per_task[t] for t in tasks],
                                                            [failed_per_task[t] for t in tasks])
    return out

