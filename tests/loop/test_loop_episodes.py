"""Repair episodes in-process: a program failing its public test gets a turn-2 prompt with its rendered
feedback (real gVisor verdicts), per-turn metrics against an independent formula, repair pairs that share one
prompt, and max_turns=1 as the one-turn rollout."""
import dataclasses
import math
import os

import pytest

from configs import base
from ieta_jax import evaluation, repair
from ieta_jax.data import synthetic
from ieta_jax.experiment import episodes, heldout, library_configs, rollout, signals, start
from ieta_jax.workdir import Workdir


def config(**overrides):
    c = base.get_config()
    c.dataset, c.model, c.method = "synthetic", "tiny", "dpo"
    c.num_train_tasks, c.num_eval_tasks = 2, 2
    c.sample_batch_size, c.timeout_s = 4, 2.0
    c.sandbox.backend, c.sandbox.workers = "gvisor", 2
    c.pass_at_k = (1, 2)
    for k, v in overrides.items():
        c[k] = v
    base.validate(c)
    return c


def make_run(c, workdir, tasks, executor=None):
    return start.Run(config=c, workdir=Workdir(str(workdir)), mesh=None, model_dir="", train_tasks=tasks,
                     eval_tasks=tasks, executor=executor)


def solution(task, bug):
    return next(s.completion for s in synthetic.solutions(task) if s.bug == bug)


class Scripted:
    """A completion-form policy: canned turn-1 samples per task; any repair prompt gets the task's fix."""

    def __init__(self, tasks, first, fixes):
        self.tasks, self.first, self.fixes, self.prompts = tasks, first, fixes, []

    def prompt(self, task):
        return task.prompt

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.prompts.extend(prompts)
        out = []
        for p in prompts:
            if p in self.first:
                out.append([self.first[p][j] for j in range(n)])
            else:  # a repair prompt ends with its task's prompt
                task = next(t for t in self.tasks if p.endswith(t.prompt) and p != t.prompt)
                out.append([self.fixes[task.task_id][j % 2] for j in range(n)])
        return out


@pytest.fixture(scope="module")
def executor():
    from sandbox import Executor

    with Executor(**library_configs.executor_kwargs(config())) as ex:
        yield ex


@pytest.fixture(scope="module")
def scripted():
    add, elem = synthetic.make_tasks("heldout", seed=0)[:2]
    assert add.task_id != elem.task_id and add.public_test and elem.public_test
    # add: sample 0 raises TypeError on the public example; elem: sample 1 returns the wrong element.
    first = {add.prompt: [solution(add, "TypeError"), solution(add, None)],
             elem.prompt: [solution(elem, None), solution(elem, "wrong_answer")]}
    fixes = {add.task_id: [solution(add, None), solution(add, "IndexError")],
             elem.task_id: [solution(elem, None), solution(elem, "IndexError")]}
    return [add, elem], first, fixes


def test_failing_public_test_gets_a_repair_turn_with_its_feedback(executor, scripted, tmp_path):
    tasks, first, fixes = scripted
    c = config(max_turns=2)
    run = make_run(c, tmp_path, tasks, executor)
    pol = Scripted(tasks, first, fixes)
    es = episodes.episodes_stage(run, "eval_samples.jsonl", pol, tasks, 2, temperature=0.5, seed=3, desc="ep",
                                 fixes=2)
    t1 = es.turns[0]
    assert [r["public_result"]["status"] for r in t1] == ["error", "passed", "passed", "failed"]
    assert [r["result"]["status"] for r in t1] == ["error", "passed", "passed", "failed"]
    # Turn 2: the two failing episodes, two fixes each, sampled from the task + program + rendered feedback.
    t2 = es.turns[1]
    assert [(r["task_id"], r["sample"], r["fix"], r["turn"]) for r in t2] == [
        (tasks[0].task_id, 0, 0, 2), (tasks[0].task_id, 0, 1, 2), (tasks[1].task_id, 1, 0, 2),
        (tasks[1].task_id, 1, 1, 2)]
    for r in t2:
        task, prev = tasks[0 if r["task_id"] == tasks[0].task_id else 1], t1[0 if r["task_id"] == tasks[0].task_id
                                                                             else 3]
        feedback = repair.render_feedback(prev["public_result"], prev["program"], task.public_test)
        assert r["prompt"] == repair.repair_prompt(task, prev["program"], feedback, chat=False)
        assert "".join(f"# {line}\n" for line in feedback.split("\n")) in r["prompt"]
        assert r["program"] == task.prompt + r["completion"]
        assert "public_result" not in r  # the last turn's programs need no feedback
    assert "TypeError" in t2[0]["prompt"] and "Got: " in t2[2]["prompt"]
    # Each turn's prompts are sampled in length order (rows stay in task order).
    assert sorted(pol.prompts[:2]) == sorted(t.prompt for t in tasks)
    assert sorted(pol.prompts[2:]) == sorted([t2[0]["prompt"], t2[2]["prompt"]])
    assert [r["result"]["status"] for r in t2] == ["passed", "error", "passed", "error"]
    # The episode continues with fix 0: both repaired.
    m = episodes.summarize_episodes(es, (1, 2), 2)
    assert m["turn_1/pass@1"] == pytest.approx(0.5) and m["turn_2/pass@1"] == pytest.approx(1.0)
    assert m["pass@1"] == m["turn_2/pass@1"] and m["repair_rate"] == 1.0 and m["num_turn_1_failures"] == 2
    # Repair pairs: one per failing program, from its own prompt.
    groups = [g for g in es.pair_groups() if g[1] is not None]
    assert [(tid, len(rows)) for tid, _, rows in groups] == [(tasks[0].task_id, 2), (tasks[1].task_id, 2)]
    # Stored per turn: a restart reads the turns back without sampling.
    assert os.path.exists(tmp_path / "eval_samples.turn_2.jsonl")
    again = episodes.episodes_stage(run, "eval_samples.jsonl", Scripted(tasks, {}, {}), tasks, 2, temperature=0.5,
                                    seed=3, desc="ep", fixes=2)
    assert again.turns == es.turns


def test_relabelled_repair_pairs_use_the_tasks_passing_programs(executor, scripted, tmp_path):
    """muCode-style relabelling (``config.repair_relabel``): a failing program whose fixes all failed still
    gets a repair pair from its own repair prompt, a passing program of its task (chosen) against the failing
    program the prompt shows or a failing fix (rejected); without relabelling it gets none."""
    tasks, first, fixes = scripted
    add, elem = tasks
    fixes = {add.task_id: [solution(add, "IndexError")] * 2, elem.task_id: fixes[elem.task_id]}
    c = config(max_turns=2)
    run = make_run(c, tmp_path, tasks, executor)
    pol = ScriptedLocal(tasks, first, fixes)
    es = episodes.episodes_stage(run, None, pol, tasks, 2, temperature=0.5, seed=3, desc="ep", fixes=2)
    shown, passing = es.turns[0][0], es.turns[0][1]  # add: sample 0 (TypeError) failed, sample 1 passed
    assert shown["result"]["status"] == "error" and passing["result"]["status"] == "passed"
    add_prompt = next(r["prompt"] for r in es.turns[1] if r["task_id"] == add.task_id)

    def repair_pairs(relabel):
        c.repair_relabel = relabel
        _, records = signals.preference_pairs(run, es, pol)
        return [p for p in records if p.prompt != add.prompt and p.prompt != elem.prompt]

    assert [p.task_id for p in repair_pairs(0)] == [elem.task_id]  # add's two fixes are the same failing program
    [groups] = [rows for tid, prompt, rows in es.pair_groups(2) if tid == add.task_id and prompt is not None]
    assert [r["program"] for r in groups[2:]] == [shown["program"], passing["program"]]
    pairs = repair_pairs(2)
    [add_pair] = [p for p in pairs if p.task_id == add.task_id]
    assert add_pair.prompt == add_prompt and add_pair.chosen == passing["completion"]
    assert add_pair.rejected in (shown["completion"], fixes[add.task_id][0])
    assert len(pairs) == 2  # config.dpo.max_repair_pairs = 1 per failing program
    c.dpo.max_repair_pairs = 3
    assert {p.rejected for p in repair_pairs(2) if p.task_id == add.task_id} == {shown["completion"],
                                                                                 fixes[add.task_id][0]}


def test_one_turn_is_the_one_turn_rollout(executor, scripted, tmp_path):
    tasks, first, fixes = scripted
    c = config(max_turns=1)
    run = make_run(c, tmp_path, tasks, executor)
    es = episodes.episodes_stage(run, "eval_samples.jsonl", Scripted(tasks, first, fixes), tasks, 2,
                                 temperature=0.5, seed=3, desc="ep")
    ss = rollout.sample_and_execute(run, Scripted(tasks, first, fixes), tasks, 2, temperature=0.5, seed=3,
                                    desc="old")
    strip = [{k: v for k, v in r.items() if k != "result"} | {"status": r["result"]["status"]} for r in ss.rows]
    assert len(es.turns) == 1
    assert [{k: v for k, v in r.items() if k != "result"} | {"status": r["result"]["status"]} for r in es.rows] == strip
    assert not os.path.exists(tmp_path / "eval_samples.turn_2.jsonl")
    m = episodes.summarize_episodes(es, (1, 2), 1)
    old = evaluation.summarize({tid: [r["result"] for r in rows] for tid, rows in ss.by_task().items()}, ks=(1, 2))
    assert {k: m[k] for k in ("pass@1", "pass@2", "execution_rate", "error_frequencies", "error_types")} == {
        **old["pass_at_k"], "execution_rate": old["execution_rate"], "error_frequencies": old["error_frequencies"],
        "error_types": old["error_types"]}
    assert "repair_rate" not in m and m["turn_1/pass@1"] == m["pass@1"]


# ----------------------------------------------------------------------------- metrics from hand-built rows
def res(status, error_type=None):
    return {"status": status, "error_type": error_type, "tests_passed": int(status == "passed"), "tests_total": 1,
            "error_line": None, "error_message": None, "duration_s": 0.0}


def row(tid, sample, status, error_type=None, turn=1, fix=0, public="failed", prompt=None, completion=None):
    completion = completion or f"    return {sample}{turn}{fix}\n"
    r = {"task_id": tid, "sample": sample, "completion": completion, "program": f"# {tid}\n{completion}",
         "result": res(status, error_type)}
    if turn == 1:
        r["public_result"] = res(public)
    else:
        r.update(fix=fix, turn=turn, prompt=prompt or f"repair {tid}{sample}")
    return r


def hand_built():
    turn1 = [row("a", 0, "passed", public="passed"), row("a", 1, "error", "IndexError"), row("a", 2, "failed"),
             row("b", 0, "failed"), row("b", 1, "failed", public="passed"), row("b", 2, "error", "TypeError")]
    turn2 = [row("a", 1, "passed", turn=2), row("a", 1, "failed", turn=2, fix=1),
             row("a", 2, "error", "ZeroDivisionError", turn=2), row("b", 0, "passed", turn=2),
             row("b", 2, "passed", turn=2), row("b", 2, "error", "ValueError", turn=2, fix=1)]
    return episodes.EpisodeSet([turn1, turn2], {})


def pass_k(n, c, k):  # the textbook estimator, with binomials
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_turn_metrics_match_an_independent_count():
    m = episodes.summarize_episodes(hand_built(), (1, 2), 2)
    # After turn 1: a passes 1 of 3, b 0 of 3; after turn 2 (fix 0 continues): a 2 of 3, b 2 of 3.
    assert m["turn_1/pass@1"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["turn_1/pass@2"] == pytest.approx((pass_k(3, 1, 2) + pass_k(3, 0, 2)) / 2)
    assert m["turn_2/pass@1"] == pytest.approx(2 / 3) and m["pass@1"] == m["turn_2/pass@1"]
    assert m["turn_2/pass@2"] == pytest.approx((pass_k(3, 2, 2) + pass_k(3, 2, 2)) / 2) == m["pass@2"]
    # 5 episodes fail the hidden tests at turn 1 (b/1 passed its public test, so it got no repair); a/1, b/0, b/2
    # pass after turn 2.
    assert m["num_turn_1_failures"] == 5 and m["repair_rate"] == pytest.approx(3 / 5)
    # Its standard error with tasks as clusters: a repaired 1 of its 2 turn-1 failures, b 2 of 3.
    assert m["repair_rate_stderr"] == pytest.approx(math.sqrt(2 * ((1 - 0.6 * 2) ** 2 + (2 - 0.6 * 3) ** 2)) / 5)
    assert m["turn_1/execution_rate"] == pytest.approx(4 / 6) and m["turn_2/execution_rate"] == pytest.approx(5 / 6)
    assert m["turn_1/error_frequencies"] == pytest.approx(
        {"IndexError": 1 / 6, "TypeError": 1 / 6, "ValueError": 0, "ZeroDivisionError": 0, "Other": 0})
    assert m["turn_2/error_frequencies"] == pytest.approx(
        {"IndexError": 0, "TypeError": 0, "ValueError": 0, "ZeroDivisionError": 1 / 6, "Other": 0})
    assert m["execution_rate"] == m["turn_2/execution_rate"]
    view = heldout.metric_view(m)
    assert view["repair_rate"] == m["repair_rate"] and "turn_1/pass@1" in view and "num_samples" not in view
    tb = heldout.scalars(m)
    assert tb["eval/turn_2/pass@1"] == m["turn_2/pass@1"] and tb["eval/repair_rate"] == m["repair_rate"]
    assert tb["eval/turn_2/error_frequency/ZeroDivisionError"] == pytest.approx(1 / 6)
    assert tb["eval/error_frequency/ZeroDivisionError"] == pytest.approx(1 / 6)


def test_no_turn_1_failure_has_no_repair_rate():
    es = episodes.EpisodeSet([[row("a", 0, "passed", public="passed")]], {})
    m = episodes.summarize_episodes(es, (1,), 2)
    assert m["repair_rate"] is None and m["num_turn_1_failures"] == 0 and m["turn_2/pass@1"] == 1.0


@dataclasses.dataclass
class CharPolicy:
    """prompt_ids / completion_ids by character code: what preference_pairs needs of a LocalPolicy."""

    max_prompt_len: int = 4096

    def prompt(self, task):
        return task.prompt

    def prompt_ids(self, text):
        return [ord(ch) for ch in text][-self.max_prompt_len:]

    def completion_ids(self, completion, max_new_tokens):
        return [ord(ch) for ch in completion][:max_new_tokens - 1] + [0]


def test_repair_pairs_share_the_prompt_of_the_failing_program():
    task = synthetic.make_tasks("train", seed=0)[0]
    tid = task.task_id
    turn1 = [row(tid, 0, "passed", public="passed"), row(tid, 1, "error", "IndexError")]
    turn2 = [row(tid, 1, "error", "TypeError", turn=2, fix=0, prompt="REPAIR PROMPT", completion="    return 1\n"),
             row(tid, 1, "passed", turn=2, fix=1, prompt="REPAIR PROMPT", completion="    return 2\n")]
    c = config()
    run = make_run(c, "/nonexistent", [task])
    pol = CharPolicy()
    pairs, records = signals.preference_pairs(run, episodes.EpisodeSet([turn1, turn2], {}), pol)
    assert len(pairs) == len(records) == 2
    first, fix = zip(pairs, records)
    assert first[0].prompt == pol.prompt_ids(task.prompt) and first[1].prompt == task.prompt
    assert first[1].chosen == turn1[0]["completion"] and first[1].rejected == turn1[1]["completion"]
    # The repair pair: the fix that passed the hidden tests over the one that did not, from the repair prompt.
    assert fix[0].prompt == pol.prompt_ids("REPAIR PROMPT") and fix[1].prompt == "REPAIR PROMPT"
    assert fix[0].chosen == pol.completion_ids("    return 2\n", c.max_new_tokens)
    assert fix[0].rejected == pol.completion_ids("    return 1\n", c.max_new_tokens)


def test_report_shows_the_turn_and_family_tables():
    from ieta_jax import report

    m = heldout.metric_view(episodes.summarize_episodes(hand_built(), (1, 2), 2))
    fam = {**m, "repair_rate": 0.25, "num_turn_1_failures": 4, "repair_rate_stderr": None}  # as before the stderr
    results = {"methods": {"dpo": {"iterations": [{"iteration": 0, **m}], "final": {**m, "test_families": fam}}}}
    assert "| dpo | 0.167 | 0.667 | 0.600 ± 0.080 (of 5) | 0.667 | 0.833 |" in report.turn_table(results)
    assert "| dpo | 0.167 | 0.667 | 0.250 (of 4) | 0.667 | 0.833 |" in report.turn_table(results, "test_families")
    assert "| ZeroDivisionError | 0.000 | 0.167 | -0.167 |" in report.turn_error_table(results, "dpo")
    one_turn = {"methods": {"dpo": {"iterations": [{"iteration": 0, **m}],
                                    "final": {k: v for k, v in m.items() if not k.startswith("turn_2")}}}}
    assert report.turn_table(one_turn) is None and report.turn_error_table(one_turn, "dpo") is None


def test_a_policy_may_format_its_own_repair_prompt():
    task = synthetic.make_tasks("train", seed=0)[0]
    r = row(task.task_id, 0, "error", "IndexError")
    r["public_result"] = {**res("error", "IndexError"), "error_message": "list index out of range"}
    expected = repair.render_feedback(r["public_result"], r["program"], task.public_test)

    class OwnFormat:
        def repair_prompt(self, t, program, feedback):
            return f"{t.task_id}|{program}|{feedback}"

    c = config()
    c.prompt_format = "chat"  # what an API policy would use (the tiny model itself refuses it)
    run = make_run(c, "/nonexistent", [task])
    assert episodes.repair_prompt_for(run, OwnFormat(), task, r) == f"{task.task_id}|{r['program']}|{expected}"
    assert "IndexError: list index out of range" in expected


class ScriptedLocal(Scripted):
    """Scripted samples with what the RL episode rollout needs of a LocalPolicy (ids by character code)."""

    max_prompt_len = 4096

    def with_model(self, model):
        return self

    def prompt_ids(self, text):
        return [ord(ch) % 128 for ch in text][-self.max_prompt_len:]

    def completion_ids(self, completion, max_new_tokens):
        return [ord(ch) % 128 for ch in completion][:max_new_tokens - 1] + [0]


def test_rl_episode_rollout_trains_every_turn_with_the_episodes_advantages(executor, scripted, tmp_path):
    """The experiment's RL rollout (signals.episode_rollout_fn, real gVisor verdicts): failing turn-1 programs
    give turn-2 sequences from their repair prompts, the episodes are numbered group-major in the trainer's prompt
    order, and the trainer's advantages are the group-relative values of the episodes' final rewards."""
    import jax
    import numpy as np
    from flax import nnx

    from ieta_jax import feedback, models, sharding
    from ieta_jax.trainers import RLConfig, RLTrainer

    tasks, first, fixes = scripted
    add, elem = tasks
    # add's repair (fix 0) raises IndexError, elem's passes.
    fixes = {add.task_id: [solution(add, "IndexError")], elem.task_id: [solution(elem, None)]}
    c = config(max_turns=2, num_samples=2)
    c.rlaif.execution_reward_weight = 1.0
    run = make_run(c, tmp_path, tasks, executor)
    pol = ScriptedLocal(tasks, first, fixes)
    rollout = signals.episode_rollout_fn(run, pol, tasks, execution=True)
    ep = rollout(None, np.asarray([1, 0]), jax.random.key(0))  # prompt order: elem (episodes 0, 1), add (2, 3)
    assert ep.turns.tolist() == [1, 1, 1, 1, 2, 2]
    assert ep.episodes.tolist() == [0, 1, 2, 3, 1, 2]  # elem sample 1 (wrong answer), add sample 0 (TypeError)
    # The rollout samples a turn's prompts in length order; the sequences follow the episodes.
    repair_prompts = [next(p for p in pol.prompts[2:] if t.prompt in p) for t in (elem, add)]
    assert ep.prompts[:4] == [pol.prompt_ids(t.prompt) for t in (elem, elem, add, add)]
    assert ep.prompts[4:] == [pol.prompt_ids(p) for p in repair_prompts]
    assert "Got: " in repair_prompts[0] and "TypeError" in repair_prompts[1]
    assert ep.completions[4:] == [pol.completion_ids(fixes[t.task_id][0], c.max_new_tokens) for t in (elem, add)]
    passed, bad = feedback.PASSED_REWARD, ep.execution[[1, 2, 5]]
    assert ep.execution[[0, 3, 4]].tolist() == [passed] * 3 and (bad < passed).all()

    cfg = RLConfig(batch_size=4, prompts_per_step=2, num_generations=2, max_prompt_length=64, max_new_tokens=64,
                   beta=0.0, max_turns=2, progress=False)
    model = models.CausalLM(models.ModelConfig(vocab_size=128, hidden_size=16, intermediate_size=32,
                                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                               max_position_embeddings=128), rngs=nnx.Rngs(0))
    trainer = RLTrainer(model, cfg, episode_rollout=rollout, mesh=sharding.make_mesh())
    batch, metrics = trainer.build_episode_rollout(2, ep)
    final = np.asarray([passed, passed, ep.execution[5], passed])  # each episode's last program
    r = final.reshape(2, 2)
    want = ((r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-4)).reshape(-1)
    np.testing.assert_allclose(batch["advantages"][:6], want[ep.episodes], rtol=1e-5, atol=1e-6)
    # add's episode 0 failed after its repair, its sibling passed: both of its turns carry its negative advantage.
    assert batch["advantages"][2] == batch["advantages"][5] < 0 < batch["advantages"][3]
    # Every turn's completion tokens are scored (the repair ones too); the padding rows are not.
    np.testing.assert_array_equal(batch["loss_mask"][:6, 64:].sum(1), [len(x) for x in ep.completions])
    assert not batch["loss_mask"][6:].any()
    assert metrics["reward"] == pytest.approx(final.mean())
