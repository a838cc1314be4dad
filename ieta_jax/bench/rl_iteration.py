"""One RL iteration, ours vs TRL's GRPOTrainer: same tiny model, tokenizer, prompts, group, lengths and reward.

    python -m ieta_jax.bench.rl_iteration                 # gVisor sandbox reward, both trainers, ratio
    python -m ieta_jax.bench.rl_iteration --prompts 2 --group 2 --new-tokens 8 --iterations 1   # a quick check

Both sides start from the same random tiny Llama (the ``tiny`` preset's shapes on a byte-level BPE tokenizer
trained on the synthetic suite's warm-start corpus, saved as one HF checkpoint), take the same synthetic train
prompts, sample ``--group`` completions per prompt at ``--temperature`` up to ``--new-tokens`` tokens, and
score every completion with the project's execution reward: the program runs against the task's hidden tests in
the sandbox (``--backend``, gVisor by default) and ``feedback.execution_reward`` maps the verdict to a reward.
The same reward function object is our ``execution_reward`` and TRL's ``reward_funcs``. One iteration is one
rollout + one optimizer update on it (``loss_type=dapo``, ``beta`` as given). Reported per iteration (median over
``--iterations`` after one untimed warm-up iteration): wall time, and its split into generation, reward
(sandbox) and update (everything else: old/reference log-probs, loss, backward, optimizer).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from ieta_jax.bench.load import LoadGuard, add_force_flag
from ieta_jax.bench.model import PRESETS


def build_checkpoint(directory: str, seed: int = 0):
    """Tokenizer trained on the synthetic warm-start corpus + a random tiny Llama, saved as one HF checkpoint."""
    from flax import nnx

    from ieta_jax import models
    from ieta_jax.data import synthetic
    from ieta_jax.tokenizer import train_tokenizer

    tasks = synthetic.make_tasks("train", seed=seed)
    corpus = synthetic.warm_start_corpus(tasks, solutions_per_task=2, bug_fraction=0.5, seed=seed)
    tok = train_tokenizer([ex.text for ex in corpus], directory + "/tokenizer", vocab_size=1024)
    spec = dict(PRESETS["tiny"], vocab_size=-(-len(tok) // 64) * 64, tie_word_embeddings=True)
    cfg = models.ModelConfig(**spec, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    models.save_pretrained(models.CausalLM(cfg, rngs=nnx.Rngs(seed)), directory, tokenizer=tok)
    return tasks, tok


class SandboxReward:
    """The execution reward both trainers call: decode, build the program, run it in the sandbox, map the verdict."""

    def __init__(self, executor, tasks, tokenizer):
        self.executor, self.tasks, self.tokenizer = executor, tasks, tokenizer
        self.seconds = 0.0

    def run(self, task_indices, texts) -> list[float]:
        from ieta_jax import feedback
        from ieta_jax.data import completions as comp_lib, task as task_lib

        t0 = time.perf_counter()
        futures = [self.executor.submit(task_lib.to_request(
            self.tasks[int(i)], comp_lib.completion_from_sample(text, self.tasks[int(i)]), f"bench#{k}"))
            for k, (i, text) in enumerate(zip(task_indices, texts))]
        out = [float(feedback.execution_reward(f.result())) for f in futures]
        self.seconds += time.perf_counter() - t0
        return out

    def ours(self, prompt_indices, completions):  # RLTrainer's ExecutionReward
        return self.run(prompt_indices, [self.tokenizer.decode(c, skip_special_tokens=True) for c in completions])

    def trl(self, prompts, completions, task_index, **kw):  # a TRL reward function (task_index: dataset column)
        return self.run(task_index, completions)


def bench_ours(directory, prompt_ids, reward, args):
    from ieta_jax import models, optim, sharding
    from ieta_jax.trainers import RLConfig, RLTrainer

    tok = models.load_tokenizer(directory)
    n = len(prompt_ids) * args.group
    config = RLConfig(batch_size=n, prompts_per_step=len(prompt_ids), num_generations=args.group,
                      max_prompt_length=max(len(p) for p in prompt_ids), max_new_tokens=args.new_tokens,
                      temperature=args.temperature, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      beta=args.beta, loss_type="dapo", shuffle=False, progress=False,
                      optim=optim.OptimConfig(learning_rate=1e-6, total_steps=1000, schedule="constant"))
    trainer = RLTrainer(models.from_pretrained(directory), config, mesh=sharding.make_mesh(),
                        execution_reward=reward.ours)
    rows = []
    for i in range(1 + args.iterations):
        t0 = time.perf_counter()
        row = trainer.fit(prompt_ids, 1)[-1]
        total = time.perf_counter() - t0
        if i:
            gen, rew = row["time/generation_s"], row["time/reward_s"]
            rows.append((total, gen, rew, total - gen - rew))
    return rows


def bench_trl(directory, prompt_texts, reward, args):
    import torch
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tok = transformers.AutoTokenizer.from_pretrained(directory)
    tok.padding_side = "left"
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    n = len(prompt_texts) * args.group
    targs = GRPOConfig(output_dir=tempfile.mkdtemp(prefix="bench_rl_trl_"), per_device_train_batch_size=n,
                       num_generations=args.group, max_completion_length=args.new_tokens,
                       temperature=args.temperature, beta=args.beta, loss_type="dapo", learning_rate=1e-6,
                       lr_scheduler_type="constant", max_steps=1 + args.iterations, use_cpu=True, bf16=False,
                       report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
                       dataloader_num_workers=0, gradient_checkpointing=False)
    ds = Dataset.from_list([{"prompt": p, "task_index": i} for i, p in enumerate(prompt_texts)])
    def execution(prompts, completions, task_index, **kw):  # TRL names the reward metric after the function
        return reward.trl(prompts, completions, task_index, **kw)

    trainer = GRPOTrainer(model=model, reward_funcs=execution, args=targs, train_dataset=ds, processing_class=tok)
    gen_s = []
    inner = trainer._generate_single_turn

    def timed_generate(*a, **kw):
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        gen_s.append(time.perf_counter() - t0)
        return out

    trainer._generate_single_turn = timed_generate
    marks = []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *a, **kw):
            marks.append([time.perf_counter(), reward.seconds])

        def on_step_end(self, *a, **kw):
            marks[-1] += [time.perf_counter(), reward.seconds]

    trainer.add_callback(Clock())
    trainer.train()
    rows = []
    for i, (t0, r0, t1, r1) in enumerate(marks):
        if i:
            total, rew = t1 - t0, r1 - r0
            rows.append((total, gen_s[i], rew, total - gen_s[i] - rew))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=4, help="prompts per iteration")
    p.add_argument("--group", type=int, default=4, help="completions per prompt")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--iterations", type=int, default=3, help="timed iterations (median reported) after 1 warm-up")
    p.add_argument("--backend", default="gvisor", help="sandbox backend (gvisor, or process without isolation)")
    p.add_argument("--workers", type=int, default=None, help="sandbox workers (default: the executor's)")
    p.add_argument("--skip-trl", action="store_true")
    add_force_flag(p)
    args = p.parse_args(argv)
    guard = LoadGuard.start(force=args.force)

    from sandbox.executor import Executor

    from ieta_jax.data import completions as comp_lib

    with tempfile.TemporaryDirectory() as directory:
        tasks, tok = build_checkpoint(directory)
        tasks = tasks[:args.prompts]
        texts = [comp_lib.format_prompt(t, tok, chat=False) for t in tasks]
        prompt_ids = [tok(t)["input_ids"] for t in texts]
        print(f"model: tiny preset shapes, vocab {len(tok)} | {len(tasks)} prompts x {args.group} completions, "
              f"<= {args.new_tokens} new tokens, T={args.temperature}, beta={args.beta}, sandbox={args.backend}")
        with Executor(backend=args.backend, workers=args.workers) as ex:
            reward = SandboxReward(ex, tasks, tok)
            results = {"ieta_jax RLTrainer (JAX)": bench_ours(directory, prompt_ids, reward, args)}
            if not args.skip_trl:
                import trl

                results[f"TRL {trl.__version__} GRPOTrainer (torch, CPU)"] = bench_trl(directory, texts, reward,
                                                                                       args)
    guard.finish()
    print("\n| implementation | iteration (s) | generation (s) | reward (s) | update (s) |\n|---|---|---|---|---|")
    med = {}
    for name, rows in results.items():
        med[name] = [statistics.median(col) for col in zip(*rows)]
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in med[name]) + " |")
    if len(med) == 2:
        ours, theirs = med.values()
        guard.ratio(f"\nratio TRL / ours, iteration wall time: {theirs[0] / ours[0]:.2f}x "
                    f"(generation {theirs[1] / ours[1]:.2f}x, update {theirs[3] / ours[3]:.2f}x)")


if __name__ == "__main__":
    main()
