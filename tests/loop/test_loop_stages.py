"""The experiment's stages called in-process with a tiny model (no CLI): rollout through the Policy interface,
chat prompts, train/held-out datasets, the method functions across iterations (schedule, gradient accumulation,
an fsdp x tensor mesh), and a run with zero iterations."""
import dataclasses
import os

import numpy as np
import pytest

from configs import base
from ieta_jax import sharding
from ieta_jax.experiment import heldout, library_configs, methods, policy as policy_lib, rollout, runner, start
from ieta_jax.trainers import PreferencePair

MBPP = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "mbpp_full.jsonl")


def tiny_config(**overrides):
    c = base.get_config()
    c.method = "dpo"
    c.num_iterations = 2
    c.num_train_tasks = 4
    c.num_eval_tasks = 3
    c.num_samples = 2
    c.eval_num_samples = 2
    c.pass_at_k = (1,)
    c.max_prompt_len = 48
    c.max_new_tokens = 16
    c.sample_batch_size = 4
    c.tiny.max_position_embeddings = 64
    c.tiny.hidden_size = 32
    c.tiny.intermediate_size = 64
    c.tiny.num_heads = 2
    c.tiny.num_kv_heads = 1
    c.tiny.vocab_size = 320
    c.tiny.solutions_per_task = 1
    c.tiny.warm_start_steps = 0
    c.batch_size = 4
    c.train_steps = 2
    c.learning_rate = 1e-2
    c.rlaif.reward_steps = 2
    c.rlaif.prompts_per_step = 2
    c.timeout_s = 2.0
    c.sandbox.backend = "gvisor"
    c.sandbox.workers = 2
    for key, value in overrides.items():
        node, *path = key.split("__")
        target = c
        for p in [node, *path][:-1]:
            target = target[p]
        target[[node, *path][-1]] = value
    base.validate(c)
    return c


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny model (tokenizer trained on the synthetic corpus, random weights) in HF format."""
    from ieta_jax import tiny

    workdir = str(tmp_path_factory.mktemp("stages"))
    return tiny.ensure_tiny_model(tiny_config(), workdir, sharding.make_mesh())


def make_run(config, workdir, model_dir, mesh=None, executor=None):
    train, held_out = start.load_task_sets(config)
    from ieta_jax.workdir import Workdir

    return start.Run(config=config, workdir=Workdir(str(workdir)), mesh=mesh or sharding.make_mesh(),
                     model_dir=model_dir, train_tasks=train, eval_tasks=held_out, executor=executor,
                     writers=heldout.MetricWriters(os.path.join(str(workdir), "tensorboard")))


def local_policy(config, model_dir, mesh):
    tok = policy_lib.load_tokenizer(model_dir)
    return policy_lib.LocalPolicy(policy_lib.load_model(model_dir, config, mesh), tok,
                                  max_prompt_len=config.max_prompt_len, chat=config.prompt_format == "chat")


def token_pairs(policy, tasks, n=8):
    """Fixed preference pairs (token ids): a correct-looking completion over a wrong one, per task."""
    pairs = []
    for i in range(n):
        t = tasks[i % len(tasks)]
        prompt = policy.prompt_ids(policy.prompt(t))
        pairs.append(PreferencePair(prompt, policy.completion_ids(f"    return {i}\n", 16),
                                    policy.completion_ids(f"    return xs[{i}] / 0\n", 16)))
    return pairs


# ----------------------------------------------------------------------------- tasks
def test_train_dataset_differs_from_dataset():
    c = base.get_config()
    c.model = "org/any"  # not loaded here
    c.dataset, c.eval_split = MBPP, "test"
    c.train_dataset, c.train_split, c.num_train_tasks = "synthetic", "train", 5
    base.validate(c)
    train, held_out = start.load_task_sets(c)
    assert [t.task_id for t in held_out] == ["mbpp/11", "mbpp/12"]
    from ieta_jax import data

    synthetic_ids = [t.task_id for t in data.load_tasks("synthetic", split="train", seed=0, limit=5)]
    assert [t.task_id for t in train] == synthetic_ids


# ----------------------------------------------------------------------------- rollout through the interface
@dataclasses.dataclass
class ScriptedPolicy:
    """A policy that is not a local model (as an API model would be): canned chat answers per task."""

    answers: dict
    calls: list = dataclasses.field(default_factory=list)

    def prompt(self, task):
        return f"Write the function.\n```python\n{task.prompt}```"

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.calls.append((len(prompts), n, temperature, seed))
        return [[self.answers[p.split("```python\n")[1][:-3]][j % 2] for j in range(n)] for p in prompts]


def test_rollout_with_a_chat_policy_behind_the_interface(tmp_path):
    from sandbox import Executor

    from ieta_jax.data import synthetic

    c = tiny_config(num_train_tasks=2, sample_batch_size=2)
    c.prompt_format = "chat"  # (a config check refuses chat with the tiny model's template-less tokenizer)
    tasks = synthetic.make_tasks("train", seed=0)[:2]
    answers = {}
    for t in tasks:
        good = next(ex.completion for ex in synthetic.warm_start_corpus([t], solutions_per_task=1, bug_fraction=0.0))
        answers[t.prompt] = [f"Here it is:\n```python\n{t.prompt}{good}```\nDone.",
                             "```python\ndef nothing():\n    return None\n```"]
    with Executor(**library_configs.executor_kwargs(c)) as ex:
        run = dataclasses.replace(make_run(c, tmp_path, model_dir=""), executor=ex)
        pol = ScriptedPolicy(answers)
        ss = rollout.sample_and_execute(run, pol, tasks, 2, temperature=0.7, seed=5, desc="chat")
    assert [(r["task_id"], r["sample"]) for r in ss.rows] == [(t.task_id, j) for t in tasks for j in range(2)]
    assert [r["result"]["status"] for r in ss.rows] == ["passed", "failed", "passed", "failed"]
    assert all(r["completion"].startswith("\n") and "```" not in r["program"] for r in ss.rows)
    # One generate() call per batch of sample_batch_size // n prompts, each with its own seed.
    assert [call[:3] for call in pol.calls] == [(1, 2, 0.7), (1, 2, 0.7)]
    assert pol.calls[0][3] == rollout.stable_seed(5, 0) and pol.calls[1][3] == rollout.stable_seed(5, 1)


def test_rollout_takes_given_prompts_for_later_turns(tmp_path):
    """A later turn's prompt (e.g. task + failing program + feedback) reaches generate() in place of the task's;
    prompts are sampled shortest first, one call per batch, and the rows come back in task order."""
    from sandbox import Executor

    from ieta_jax.data import synthetic

    c = tiny_config(num_train_tasks=2, sample_batch_size=2)
    tasks = synthetic.make_tasks("train", seed=0)[:2]
    good = synthetic.warm_start_corpus(tasks[:1], solutions_per_task=1, bug_fraction=0.0)[0].completion
    seen = []

    class Echo:
        def prompt(self, task):
            raise AssertionError("given prompts must be used")

        def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
            seen.extend(prompts)
            return [[good if p.startswith("fix 0") else "    return None\n"] * n for p in prompts]

    with Executor(**library_configs.executor_kwargs(c)) as ex:
        run = dataclasses.replace(make_run(c, tmp_path, model_dir=""), executor=ex)
        ss = rollout.sample_and_execute(run, Echo(), tasks, 2, temperature=1.0, seed=0, desc="turn 2",
                                        prompts=["fix 0: a longer prompt", "fix 1: ..."])
    assert seen == ["fix 1: ...", "fix 0: a longer prompt"]
    assert [r["result"]["status"] for r in ss.rows] == ["passed", "passed", "failed", "failed"]
    assert ss.rows[0]["program"] == tasks[0].prompt + good


@pytest.mark.parametrize("reuse", [True, False])
def test_identical_programs_run_once_and_share_the_verdict(tmp_path, reuse):
    """sandbox.reuse_verdicts: samples that wrote the same program share one hidden and one public run; each row
    keeps its own request id, and the verdicts are those of running every sample."""
    from sandbox import Executor

    from ieta_jax.data import synthetic

    c = tiny_config(num_train_tasks=1, sample_batch_size=8)
    c.sandbox.reuse_verdicts = reuse
    task = synthetic.make_tasks("train", seed=0)[0]
    good = synthetic.warm_start_corpus([task], solutions_per_task=1, bug_fraction=0.0)[0].completion

    class Same:
        def prompt(self, t):
            return t.prompt

        def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
            return [[good, good, "    return None\n", good] for _ in prompts]

    submitted = []
    with Executor(**library_configs.executor_kwargs(c)) as ex:
        class Counting:
            def submit(self, req):
                submitted.append(req["id"])
                return ex.submit(req)

        run = dataclasses.replace(make_run(c, tmp_path, model_dir=""), executor=Counting())
        ss = rollout.sample_and_execute(run, Same(), [task], 4, temperature=1.0, seed=0, desc="x", public=True)
    assert len(submitted) == (4 if reuse else 8)  # 2 distinct programs x (hidden, public) vs 4 x 2
    assert [r["result"]["status"] for r in ss.rows] == ["passed", "passed", "failed", "passed"]
    assert [r["public_result"]["status"] for r in ss.rows] == ["passed", "passed", "failed", "passed"]
    assert [r["result"]["id"] for r in ss.rows] == [f"{task.task_id}#{j}" for j in range(4)]
    assert [r["public_result"]["id"] for r in ss.rows] == [f"{task.task_id}#{j}/public" for j in range(4)]


def test_local_policy_chat_prompt_uses_the_template(tiny_dir):
    from ieta_jax.data import synthetic

    c = tiny_config()
    pol = local_policy(c, tiny_dir, sharding.make_mesh())
    pol.tokenizer.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|a|>"
    pol = dataclasses.replace(pol, chat=True)
    task = synthetic.make_tasks("train", seed=0)[0]
    text = pol.prompt(task)
    assert text.startswith("<|user|>") and task.prompt.rstrip() in text and text.endswith("<|a|>")
    [[a, b]] = pol.generate([text], 2, 1.0, 1.0, 8, seed=3)
    assert pol.generate([text], 2, 1.0, 1.0, 8, seed=3) == [[a, b]]  # same seed, same samples


def test_local_policy_pads_a_call_to_a_power_of_two_prompts_at_most_the_widest(tiny_dir, monkeypatch):
    """Few compiled shapes, and a small call (an RL step's rollout) does not pay for the widest batch."""
    from ieta_jax import sampling

    pol = dataclasses.replace(local_policy(tiny_config(), tiny_dir, sharding.make_mesh()), max_prompt_len=100)
    shapes = []
    real = sampling.generate
    monkeypatch.setattr(sampling, "generate", lambda model, ids, **kw: shapes.append(ids.shape) or real(model, ids, **kw))
    for count in (3, 12, 5, 12, 9, 2):
        out = pol.generate([f"def f{i}(x):" * (1 + 30 * (count == 2)) for i in range(count)], 2, 1.0, 1.0, 4, seed=0)
        assert len(out) == count and all(len(s) == 2 for s in out)
    assert [rows for rows, _ in shapes] == [3, 12, 8, 12, 12, 2]
    # Prompt lengths in steps of PROMPT_STEP, capped at max_prompt_len (rounded up to the sampler's bucket).
    long_prompt = len(pol.prompt_ids("def f0(x):" * 31))
    assert long_prompt == 100  # left-truncated to max_prompt_len, then padded to 112 (not 128)
    assert {length for _, length in shapes[:-1]} == {policy_lib.PROMPT_STEP}
    assert shapes[-1][1] == min(-(-long_prompt // policy_lib.PROMPT_STEP) * policy_lib.PROMPT_STEP,
                                -(-pol.max_prompt_len // sampling.PROMPT_BUCKET) * sampling.PROMPT_BUCKET)


# ----------------------------------------------------------------------------- methods across iterations
def _dpo_losses_and_lrs(c, tiny_dir, tmp_path, mesh, iterations=(1, 2)):
    run = make_run(c, tmp_path, tiny_dir, mesh=mesh)
    pol = local_policy(c, tiny_dir, mesh)
    pairs = token_pairs(pol, run.train_tasks)
    out = []
    for k in iterations:
        trained = methods.train_dpo(run, pol, pairs, k, str(tmp_path / f"iter_{k}"))
        out.append(trained.record)
        pol = trained.policy
    return out


def _losses(records):
    return [x for r in records for x in r["loss"]]


def test_lr_schedule_decays_across_iterations(tiny_dir, tmp_path):
    c = tiny_config(lr_schedule="linear")
    records = _dpo_losses_and_lrs(c, tiny_dir, tmp_path, sharding.make_mesh())
    total = c.train_steps * c.num_iterations  # 4 updates over the run, linear to 0
    expected = [c.learning_rate * (1 - s / total) for s in range(total)]
    assert [lr for r in records for lr in r["learning_rate"]] == pytest.approx(expected, rel=1e-6)
    # Each iteration's DPO reference is the policy it starts from: the first loss is ln 2 (zero margins) both times,
    # and iteration 2 then trains on from there.
    assert [r["loss"][0] for r in records] == pytest.approx([np.log(2.0)] * 2, abs=1e-5)
    assert all(r["loss"][1] < r["loss"][0] for r in records)


def test_grad_accum_matches_one_big_batch(tiny_dir, tmp_path):
    one = _dpo_losses_and_lrs(tiny_config(), tiny_dir, tmp_path / "a", sharding.make_mesh(), (1,))
    accum = _dpo_losses_and_lrs(tiny_config(grad_accum_steps=2), tiny_dir, tmp_path / "b", sharding.make_mesh(),
                                (1,))
    assert _losses(accum) == pytest.approx(_losses(one), rel=1e-4, abs=1e-5)


def test_fsdp_and_tensor_mesh_match_data_parallel(tiny_dir, tmp_path):
    dp = _dpo_losses_and_lrs(tiny_config(), tiny_dir, tmp_path / "dp", sharding.make_mesh(data=-1), (1,))
    c = tiny_config(mesh__data=2, mesh__fsdp=2, mesh__tensor=2)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    sharded = _dpo_losses_and_lrs(c, tiny_dir, tmp_path / "sharded", mesh, (1,))
    assert _losses(sharded) == pytest.approx(_losses(dp), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("max_turns", [1, 2])
def test_rlaif_continues_reward_model_and_schedule(tiny_dir, tmp_path, max_turns):
    """max_turns=2: RL over repair episodes (sandboxed), padded rollouts, the same schedule bookkeeping."""
    import contextlib

    from sandbox import Executor

    from ieta_jax import models

    c = tiny_config(method="rlaif", lr_schedule="linear", rlaif__execution_reward_weight=0.0, max_turns=max_turns)
    mesh = sharding.make_mesh()
    with Executor(**library_configs.executor_kwargs(c)) if max_turns > 1 else contextlib.nullcontext() as ex:
        run = make_run(c, tmp_path, tiny_dir, mesh=mesh, executor=ex)
        pol = local_policy(c, tiny_dir, mesh)
        rm = policy_lib.load_model(tiny_dir, c, mesh, models.RewardModel)
        pairs = token_pairs(pol, run.train_tasks)
        reference = pol.model
        upi = library_configs.rl_updates_per_step(c)
        total_rm, total_rl = c.rlaif.reward_steps * c.num_iterations, c.train_steps * c.num_iterations * upi
        for k in (1, 2):
            trained = methods.train_rlaif(run, pol, rm, reference, pairs, k, str(tmp_path / f"iter_{k}"))
            rm_lrs = trained.record["reward_model_learning_rate"]
            first = (k - 1) * c.rlaif.reward_steps
            assert rm_lrs == pytest.approx([c.rlaif.reward_learning_rate * (1 - s / total_rm)
                                            for s in range(first, first + c.rlaif.reward_steps)], rel=1e-6)
            assert trained.record["learning_rate"][0] == pytest.approx(
                c.learning_rate * (1 - ((k - 1) * c.train_steps * upi + upi - 1) / total_rl), rel=1e-6)
            assert trained.reward_model is not rm
            assert len(trained.record["learning_rate"]) == c.train_steps
            pol, rm = trained.policy, trained.reward_model


# ----------------------------------------------------------------------------- the whole runner
def test_zero_iterations_evaluates_the_starting_policy_only(tiny_dir, tmp_path):
    import shutil

    c = tiny_config(method="all", num_iterations=0)
    workdir = tmp_path / "run"
    shutil.copytree(tiny_dir, workdir / "tiny_model")  # the cached warm start is reused
    results = runner.run_experiment(c, str(workdir))
    initial = heldout.metric_view(results["methods"]["baseline"]["final"])
    for method in runner.METHODS:
        m = results["methods"][method]
        assert [it["iteration"] for it in m["iterations"]] == [0]
        assert m["final"] == initial
        assert not (workdir / method).exists()
    rows = [r for r in open(workdir / "initial" / "eval_samples.jsonl")]
    assert len(rows) == c.num_eval_tasks * c.eval_num_samples
    assert (workdir / "report.md").exists() and (workdir / "config.json").exists()
