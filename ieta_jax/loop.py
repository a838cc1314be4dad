"""The IETA experiment: iterate sample -> execute -> pairs/rewards -> train -> evaluate, per method.

``run_experiment(config, workdir)`` runs ``baseline``, ``dpo`` and ``rlaif`` (or one of them) from the same
starting policy:

* **sample**: ``num_samples`` completions per train task from the current policy, in batches of
  ``sample_batch_size`` sequences; each decoded batch goes to the sandbox fleet at once
  (``Executor.submit``), so the sandboxes execute it while the policy samples the next batch.
* **feedback**: ``feedback.build_pairs`` turns each task's G results into preference pairs
  (passed > failed > error ..., traces kept), ``feedback.execution_reward`` into scalar rewards.
* **train**: DPO trains the policy on the pairs (the reference is the policy at the start of the
  iteration); RLAIF trains a Bradley-Terry reward model on the same pairs, then runs group-relative
  RL of the policy against it (plus ``rlaif.execution_reward_weight`` x the sandbox's execution
  reward when that weight is > 0), with the KL to the starting policy.
* **evaluate**: ``eval_num_samples`` completions per held-out task -> pass@k, execution rate and
  error frequencies (``evaluation.summarize``).

``baseline`` is the starting policy evaluated with the same protocol (no feedback training); its
numbers are the iteration-0 numbers of the other two methods as well.

Every stage writes its output atomically under the workdir (``<method>/iter_<k>/samples.jsonl``,
``.../train.json``, ``.../eval.json``); the trainers checkpoint with Orbax. A run killed at any moment
and restarted with the same command skips finished stages and resumes the trainers from their last
checkpoint. Outputs: TensorBoard events (``<workdir>/tensorboard/<run>``), ``results.json``,
``report.md`` with PNG plots.

Multi-host (``launch.main --distributed``): every process builds the same global mesh and runs every
jitted computation (sampling, warm start, DPO / reward model / RL) on the same inputs. Process 0 alone
trains the tokenizer, runs the sandbox executor and writes the workdir; sandbox verdicts, execution
rewards and the resume state it reads are broadcast (``ieta_jax.distributed.on_primary``), so pairs,
rewards and metrics are identical on every process. The workdir must be a filesystem all hosts see
(Orbax checkpoints and the saved policies are read back by every process).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from typing import Any, Sequence

import ml_collections
import numpy as np

log = logging.getLogger("ieta_jax.loop")

METHODS = ("baseline", "dpo", "rlaif")


# ----------------------------------------------------------------------------- small utilities
def write_json(path: str, obj: Any) -> None:
    """Atomic: a reader (or a restarted run) sees the old file or the new one, never half of one.

    Only process 0 writes (a no-op on the others of a multi-process run)."""
    if not _is_primary():
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> Any | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    """Atomic, process 0 only (see write_json)."""
    if not _is_primary():
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _seed(*parts) -> int:
    """A stable 31-bit seed from strings/ints (Python's hash() is salted per process)."""
    import zlib

    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


# ----------------------------------------------------------------------------- the experiment
@dataclasses.dataclass
class SampleSet:
    """Samples of one stage: one row per completion, in task-major order."""

    rows: list[dict]           # task_id, sample, completion, program, result (dict)
    time_s: dict[str, float]   # sampling, execution (wait not hidden by sampling), sandbox_busy

    def by_task(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.rows:
            out.setdefault(r["task_id"], []).append(r)
        return out


class Experiment:
    """One run of the configured methods in one workdir. ``run()`` does everything and is resumable."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.workdir = os.path.abspath(workdir)
        if _is_primary():
            os.makedirs(self.workdir, exist_ok=True)
        self.executor = None
        self.writers: dict[str, Any] = {}

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        import jax

        from configs import base
        from ieta_jax import data, models, sharding

        c = self.config
        base.check_devices(c, jax.device_count())
        if c.method in ("dpo", "all"):
            self._dpo_extra()  # fail now, not after the warm start
        self.mesh = sharding.make_mesh(data=c.mesh.data, fsdp=c.mesh.fsdp, tensor=c.mesh.tensor)
        log.info("devices: %d x %s, mesh %s", jax.device_count(), jax.devices()[0].platform, dict(self.mesh.shape))
        self._check_config_file()
        if c.model == "tiny":
            from ieta_jax import tiny

            self.model_dir = tiny.ensure_tiny_model(c, self.workdir, self.mesh)
        else:
            self.model_dir = c.model
        self.tokenizer = models.load_tokenizer(self.model_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        train_ds = c.train_dataset or c.dataset
        self.train_tasks = data.load_tasks(train_ds, split=c.train_split or None,
                                           limit=c.num_train_tasks or None, **self._dataset_kwargs(train_ds))
        self.eval_tasks = data.load_tasks(c.dataset, split=c.eval_split or None,
                                          limit=c.num_eval_tasks or None, **self._dataset_kwargs(c.dataset))
        if not self.train_tasks or not self.eval_tasks:
            raise ValueError(f"no tasks: {len(self.train_tasks)} train ({train_ds}/{c.train_split}), "
                             f"{len(self.eval_tasks)} held-out ({c.dataset}/{c.eval_split})")
        overlap = {t.task_id for t in self.train_tasks} & {t.task_id for t in self.eval_tasks}
        if overlap:
            log.warning("%d held-out tasks also appear in the train tasks (e.g. %s): held-out numbers are not "
                        "held out", len(overlap), sorted(overlap)[:3])
        log.info("tasks: %d train (%s), %d held-out (%s)", len(self.train_tasks), train_ds, len(self.eval_tasks),
                 c.dataset)
        self.prompt_ids = {t.task_id: self._prompt_ids(t) for t in self.train_tasks + self.eval_tasks}

    def _dataset_kwargs(self, name: str) -> dict:
        return {"seed": self.config.seed} if name == "synthetic" else {}

    def _check_config_file(self) -> None:
        """Record the config; a restart with a different one is refused (it would mix two experiments)."""
        from ieta_jax import distributed

        path = os.path.join(self.workdir, "config.json")
        current = json.loads(self.config.to_json())
        previous = distributed.on_primary(lambda: read_json(path))
        if previous is not None:
            changed = {k for k in set(current) | set(previous) if current.get(k) != previous.get(k)}
            changed -= {"debug"}
            if changed:
                raise ValueError(f"{self.workdir} holds a run with a different config (fields {sorted(changed)}); "
                                 "use a new --workdir or restore those values")
        else:
            write_json(path, current)

    def _prompt_ids(self, task) -> list[int]:
        from ieta_jax.data import completions

        text = completions.format_prompt(task, self.tokenizer, chat=self.config.prompt_format == "chat")
        ids = self.tokenizer(text)["input_ids"]
        return ids[-self.config.max_prompt_len:]

    def _writer(self, run: str):
        from ieta_jax.metric_writer import MetricWriter

        if run not in self.writers:
            self.writers[run] = MetricWriter(os.path.join(self.workdir, "tensorboard", run))
        return self.writers[run]

    @staticmethod
    def _read_shared(path: str) -> Any | None:
        """A state file as process 0 sees it, on every process: resume decisions are the same everywhere."""
        from ieta_jax import distributed

        return distributed.on_primary(lambda: read_json(path))

    def _load_policy(self, model_class=None):
        from ieta_jax import models

        kw = {} if model_class is None else {"model_class": model_class}
        return models.from_pretrained(self.model_dir, dtype=self.config.dtype, mesh=self.mesh,
                                      param_dtype=self.config.param_dtype, seed=self.config.seed, **kw)

    # ------------------------------------------------------------------ sampling + execution
    def sample_and_execute(self, model, tasks, n: int, *, temperature: float, seed: int, desc: str) -> SampleSet:
        """``n`` completions per task; each generated batch is submitted to the sandboxes at once."""
        import jax
        from tqdm.auto import tqdm

        from ieta_jax import distributed, sampling
        from ieta_jax.data import completions as comp_lib, task as task_lib

        c = self.config
        chat = c.prompt_format == "chat"
        primary = distributed.is_primary()
        per_batch = max(1, c.sample_batch_size // n)  # prompts per generate() call
        futures, meta = [], []
        t_sample = 0.0
        t_start = time.perf_counter()
        bar = tqdm(total=len(tasks) * n, desc=desc, unit="sample", leave=False, disable=not primary)
        for b, start in enumerate(range(0, len(tasks), per_batch)):
            chunk = tasks[start:start + per_batch]
            prompts = [self.prompt_ids[t.task_id] for t in chunk]
            prompts += [prompts[-1]] * (per_batch - len(prompts))  # static batch shape: one compilation
            t0 = time.perf_counter()
            out = sampling.generate(model, prompts, max_new_tokens=c.max_new_tokens, temperature=temperature,
                                    top_p=c.top_p, top_k=c.top_k, rng=jax.random.key(_seed(seed, b)),
                                    eos_token_id=self.eos_id, num_samples=n, pad_token_id=self.pad_id)
            texts = sampling.decode_text(self.tokenizer, out)
            t_sample += time.perf_counter() - t0
            for i, t in enumerate(chunk):
                for j in range(n):
                    raw = texts[i * n + j]
                    completion = comp_lib.completion_from_sample(raw, t, chat=chat)
                    rid = f"{t.task_id}#{j}"
                    timeout = min(c.timeout_s, float(t.metadata.get("timeout_s", c.timeout_s)))
                    req = task_lib.to_request(t, completion, rid, trace=c.trace, timeout_s=timeout,
                                              memory_mb=c.memory_mb)
                    if primary:  # process 0 runs the programs; the others get the verdicts below
                        futures.append(self.executor.submit(req))
                    meta.append({"task_id": t.task_id, "sample": j, "completion": completion,
                                 "program": req["solution"], "eos": bool(out.lengths[i * n + j] < c.max_new_tokens
                                                                        or texts[i * n + j] != raw)})
            bar.update(len(chunk) * n)
        t_wait = time.perf_counter()
        results = distributed.on_primary(lambda: [fut.result().to_dict() for fut in futures])
        rows = [{**m, "result": res} for m, res in zip(meta, results)]
        bar.close()
        now = time.perf_counter()
        busy = sum(r["result"]["duration_s"] or 0.0 for r in rows)
        times = {"sampling": t_sample, "execution": now - t_wait, "sandbox_busy": busy, "total": now - t_start}
        log.info("%s: %d samples; sampling %.1fs, execution not hidden by sampling %.1fs (sandbox busy %.1fs), "
                 "total %.1fs", desc, len(rows), t_sample, now - t_wait, busy, now - t_start)
        return SampleSet(rows, times)

    def _samples_stage(self, path: str, model, tasks, n, *, temperature, seed, desc) -> SampleSet:
        from ieta_jax import distributed

        rows, meta = distributed.on_primary(lambda: (read_jsonl(path), read_json(path + ".time.json")))
        if rows is not None and meta is not None:
            log.info("%s: %d samples already in %s, reused (finished earlier or shared)", desc, len(rows), path)
            return SampleSet(rows, meta)
        ss = self.sample_and_execute(model, tasks, n, temperature=temperature, seed=seed, desc=desc)
        write_jsonl(path, ss.rows)
        write_json(path + ".time.json", ss.time_s)
        return ss

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model, stage_dir: str, seed_key: str) -> dict:
        """Held-out metrics of ``model``; cached in ``stage_dir/eval.json``."""
        from ieta_jax import evaluation

        path = os.path.join(stage_dir, "eval.json")
        cached = self._read_shared(path)
        if cached is not None:
            return cached
        c = self.config
        t0 = time.perf_counter()
        ss = self._samples_stage(os.path.join(stage_dir, "eval_samples.jsonl"), model, self.eval_tasks,
                                 c.eval_num_samples, temperature=c.eval_temperature,
                                 seed=_seed(c.seed, "eval", seed_key), desc=f"eval {seed_key}")
        by_task = {tid: [r["result"] for r in rows] for tid, rows in ss.by_task().items()}
        summary = evaluation.summarize(by_task, ks=tuple(c.pass_at_k))
        metrics = {**summary["pass_at_k"], "execution_rate": summary["execution_rate"],
                   "error_frequencies": summary["error_frequencies"], "error_types": summary["error_types"],
                   "num_samples": summary["num_samples"], "num_tasks": summary["num_tasks"],
                   "time_s": {"evaluation": time.perf_counter() - t0, **{f"eval_{k}": v for k, v in ss.time_s.items()}}}
        write_json(path, metrics)
        return metrics

    def _log_eval(self, run: str, step: int, metrics: dict, stage_dir: str | None = None) -> None:
        w = self._writer(run)
        scalars = {f"eval/{k}": v for k, v in metrics.items() if k.startswith("pass@")}
        scalars["eval/execution_rate"] = metrics["execution_rate"]
        for k, v in metrics["error_frequencies"].items():
            scalars[f"eval/error_frequency/{k}"] = v
        w.write_scalars(step, scalars)
        if stage_dir is not None and _is_primary():  # the writer is a no-op on the other processes
            rows = read_jsonl(os.path.join(stage_dir, "eval_samples.jsonl")) or []
            w.write_text(step, self._sample_texts(rows))
        w.flush()

    def _sample_texts(self, rows: list[dict]) -> dict[str, str]:
        """A few held-out programs with their verdicts and traces, as markdown for TensorBoard's text tab."""
        picked, seen = [], set()
        for want in ("passed", None):  # one passing program first, then failures of different kinds
            for r in rows:
                key = r["result"]["status"] if want is None else "passed"
                if len(picked) >= self.config.num_text_samples:
                    break
                if (want and r["result"]["status"] != "passed") or key in seen:
                    continue
                seen.add(key)
                picked.append(r)
        out = {}
        for i, r in enumerate(picked):
            res = r["result"]
            trace = res.get("trace")
            trace_txt = json.dumps(trace, indent=1)[:3000] if trace else "(trace capture off)"
            out[f"samples/{i}"] = (
                f"**{r['task_id']}** sample {r['sample']}: `{res['status']}` {res.get('error_type') or ''} "
                f"(line {res.get('error_line')}), tests {res.get('tests_passed')}/{res.get('tests_total')}\n\n"
                f"```python\n{r['program']}\n```\n\n{res.get('error_message') or ''}\n\n"
                f"trace:\n```json\n{trace_txt}\n```")
        return out

    # ------------------------------------------------------------------ feedback
    def _pairs(self, ss: SampleSet) -> tuple[list, list]:
        """(trainer PreferencePairs as token ids, feedback.Pair records) from a sample set."""
        from ieta_jax import feedback
        from ieta_jax.trainers import PreferencePair

        tasks = {t.task_id: t for t in self.train_tasks}
        token_pairs, records = [], []
        for tid, rows in ss.by_task().items():
            pairs = feedback.build_pairs(tasks[tid], [r["program"] for r in rows], [r["result"] for r in rows],
                                         max_pairs=self.config.dpo.max_pairs_per_task,
                                         completions=[r["completion"] for r in rows])
            for p in pairs:
                chosen = self._completion_ids(p.chosen)
                rejected = self._completion_ids(p.rejected)
                if len(chosen) < 2 or len(rejected) < 2:
                    continue
                token_pairs.append(PreferencePair(self.prompt_ids[tid], chosen, rejected))
                records.append(p)
        return token_pairs, records

    def _completion_ids(self, completion: str) -> list[int]:
        ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"][: self.config.max_new_tokens - 1]
        return ids + [self.eos_id]

    def _execution_reward_fn(self, tasks):
        """For the RL trainer: run each generated completion in the sandbox, reward by feedback.execution_reward."""
        from ieta_jax import feedback
        from ieta_jax.data import completions as comp_lib, task as task_lib

        c = self.config

        from ieta_jax import distributed

        def reward(prompt_indices: np.ndarray, completions: list[list[int]]) -> list[float]:
            return distributed.on_primary(lambda: run(prompt_indices, completions))

        def run(prompt_indices, completions) -> list[float]:
            futures = []
            for k, (pi, ids) in enumerate(zip(prompt_indices, completions)):
                t = tasks[int(pi)]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                completion = comp_lib.completion_from_sample(text, t, chat=c.prompt_format == "chat")
                timeout = min(c.timeout_s, float(t.metadata.get("timeout_s", c.timeout_s)))
                futures.append(self.executor.submit(task_lib.to_request(t, completion, f"rl#{k}", timeout_s=timeout,
                                                                        memory_mb=c.memory_mb)))
            return [float(feedback.execution_reward(f.result())) for f in futures]

        return reward

    # ------------------------------------------------------------------ trainers
    def _optim(self, lr: float, total_steps: int):
        from ieta_jax import optim

        c = self.config
        return optim.OptimConfig(learning_rate=lr, warmup_steps=c.warmup_steps, total_steps=max(total_steps, 1),
                                 schedule=c.lr_schedule, weight_decay=c.weight_decay, max_grad_norm=c.max_grad_norm,
                                 grad_accum_steps=c.grad_accum_steps)

    def _max_length(self) -> int:
        return self.config.max_prompt_len + self.config.max_new_tokens

    def _train_dpo(self, method_dir: str, pairs: list) -> dict:
        from ieta_jax.trainers import DPOConfig, DPOTrainer

        c = self.config
        cfg = DPOConfig(batch_size=c.batch_size, max_length=self._max_length(), pad_token_id=self.pad_id,
                        optim=self._optim(c.learning_rate, c.train_steps * c.num_iterations), seed=c.seed,
                        save_every=max(10, c.train_steps // 2), keep_checkpoints=c.checkpoint_keep,
                        beta=c.dpo.beta, loss_type=c.dpo.loss_type, label_smoothing=c.dpo.label_smoothing,
                        **self._dpo_extra())
        trainer = DPOTrainer(self._load_policy(), cfg, mesh=self.mesh, workdir=os.path.join(method_dir, "policy"),
                             writer=self._writer("dpo"))
        rows = trainer.fit(pairs, c.train_steps) if pairs else []
        if pairs and len(rows) != c.train_steps:
            raise RuntimeError(f"DPO fit returned {len(rows)} rows, expected {c.train_steps}")
        self.policy = trainer.model
        trainer.close()
        return {"loss": [r["train/loss"] for r in rows],
                "accuracy": [r.get("rewards/accuracies") for r in rows]}

    def _dpo_extra(self) -> dict:
        """Optional DPO settings that only newer trainers have (checked, so a config never silently drops one)."""
        import dataclasses as dc

        from ieta_jax.trainers import DPOConfig

        fields = {f.name for f in dc.fields(DPOConfig)}
        if self.config.dpo.sft_weight > 0:
            if "sft_weight" not in fields:
                raise ValueError("config.dpo.sft_weight > 0 needs a DPOConfig with an sft_weight field")
            return {"sft_weight": self.config.dpo.sft_weight}
        return {}

    def _save_policy(self, it_dir: str) -> None:
        """The trained policy of this iteration as a HF checkpoint (loadable by transformers), written atomically."""
        import shutil

        import jax

        from ieta_jax import distributed, models

        out = os.path.join(it_dir, "policy")
        tmp = out + ".tmp"
        if jax.process_index() == 0 and os.path.exists(tmp):
            shutil.rmtree(tmp)
        models.save_pretrained(self.policy, tmp, tokenizer=self.tokenizer)
        if jax.process_index() == 0:
            if os.path.exists(out):
                shutil.rmtree(out)
            os.replace(tmp, out)
        distributed.barrier(f"save_policy:{out}")  # no process loads it before it is in place

    def _policy_after(self, method_dir: str, k: int):
        """The policy after iteration ``k`` (``k = 0``: the starting policy)."""
        from ieta_jax import models

        if k == 0:
            return self._load_policy()
        return models.from_pretrained(os.path.join(method_dir, f"iter_{k}", "policy"), dtype=self.config.dtype,
                                      mesh=self.mesh, param_dtype=self.config.param_dtype)

    def _train_rlaif(self, method_dir: str, pairs: list, iteration: int) -> dict:
        from ieta_jax import models
        from ieta_jax.trainers import RewardConfig, RewardTrainer, RLConfig, RLTrainer

        c = self.config
        r = c.rlaif
        rm_cfg = RewardConfig(batch_size=c.batch_size, max_length=self._max_length(), pad_token_id=self.pad_id,
                              optim=self._optim(r.reward_learning_rate, r.reward_steps * c.num_iterations),
                              seed=c.seed, save_every=max(10, r.reward_steps // 2), keep_checkpoints=c.checkpoint_keep)
        rm_trainer = RewardTrainer(self._load_policy(models.RewardModel), rm_cfg, mesh=self.mesh,
                                   workdir=os.path.join(method_dir, "reward_model"),
                                   writer=self._writer("rlaif_reward_model"))
        rm_rows = rm_trainer.fit(pairs, r.reward_steps) if pairs else []
        if pairs and len(rm_rows) != r.reward_steps:
            raise RuntimeError(f"reward-model fit returned {len(rm_rows)} rows, expected {r.reward_steps}")
        out = {"reward_model_loss": [x["train/loss"] for x in rm_rows],
               "reward_model_accuracy": [x.get("accuracy") for x in rm_rows]}
        rl_trainer = self._rl_trainer(method_dir, reward_model=rm_trainer.model)
        # The prompts in an iteration-specific order: a new fit each iteration (the trainer treats a repeated
        # fit on identical data as one to resume), and the same order again when this iteration is resumed.
        order = np.random.default_rng(_seed(c.seed, "rl_prompts", iteration)).permutation(len(self.train_tasks))
        rows = rl_trainer.fit([self.prompt_ids[self.train_tasks[i].task_id] for i in order], c.train_steps)
        if len(rows) != c.train_steps:
            raise RuntimeError(f"RL fit of iteration {iteration} returned {len(rows)} rows, expected {c.train_steps}")
        self.policy = rl_trainer.model
        rl_trainer.close()
        rm_trainer.close()
        out.update({"loss": [x["train/loss"] for x in rows], "reward": [x.get("reward") for x in rows],
                    "kl": [x.get("kl") for x in rows]})
        return out

    def _rl_config(self):
        from ieta_jax.trainers import RLConfig

        c = self.config
        r = c.rlaif
        updates = r.inner_epochs * r.prompts_per_step * c.num_samples // c.batch_size
        return RLConfig(batch_size=c.batch_size, pad_token_id=self.pad_id,
                        optim=self._optim(c.learning_rate, c.train_steps * c.num_iterations * updates),
                        seed=c.seed, save_every=max(5, c.train_steps // 2), keep_checkpoints=c.checkpoint_keep,
                        prompts_per_step=r.prompts_per_step, num_generations=c.num_samples,
                        max_prompt_length=c.max_prompt_len, max_new_tokens=c.max_new_tokens,
                        temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, eos_token_id=self.eos_id,
                        ppo_epochs=r.inner_epochs, clip_eps=r.clip_eps, beta=r.kl_beta, scale_rewards=r.scale_rewards,
                        reward_model_weight=1.0, execution_reward_weight=r.execution_reward_weight)

    def _rl_trainer(self, method_dir: str, reward_model):
        from ieta_jax.trainers import RLTrainer

        c = self.config
        exec_fn = self._execution_reward_fn(self.train_tasks) if c.rlaif.execution_reward_weight > 0 else None
        return RLTrainer(self._load_policy(), self._rl_config(), reward_model=reward_model, execution_reward=exec_fn,
                         ref_model=self._load_policy(), mesh=self.mesh, workdir=os.path.join(method_dir, "policy"),
                         writer=self._writer("rlaif"))

    # ------------------------------------------------------------------ one method
    def run_method(self, method: str, initial: dict) -> dict:
        c = self.config
        method_dir = os.path.join(self.workdir, method)
        iterations = [{"iteration": 0, **_metric_view(initial)}]
        self._log_eval(method, 0, initial, os.path.join(self.workdir, "initial"))
        if method == "baseline":
            return {"iterations": iterations, "final": _metric_view(initial)}
        self.policy = None
        for k in range(1, c.num_iterations + 1):
            it_dir = os.path.join(method_dir, f"iter_{k}")
            done = self._read_shared(os.path.join(it_dir, "iteration.json"))
            if done is not None:
                iterations.append(done)
                self.policy = None
                continue
            if k > 1 and self.policy is None:
                self.policy = self._policy_after(method_dir, k - 1)
            timer = _Timer()
            policy = self.policy if self.policy is not None else self._policy_after(method_dir, k - 1)
            # Iteration 1 samples the shared starting policy: every method reuses the same samples.
            samples_path = (os.path.join(self.workdir, "initial", "train_samples.jsonl") if k == 1
                            else os.path.join(it_dir, "samples.jsonl"))
            ss = self._samples_stage(samples_path, policy, self.train_tasks, c.num_samples,
                                     temperature=c.temperature,
                                     seed=_seed(c.seed, "train", 1) if k == 1 else _seed(c.seed, method, k, "train"),
                                     desc=f"{method} iter {k}: sample+execute")
            timer.add("sampling", ss.time_s["sampling"])
            timer.add("execution", ss.time_s["execution"])
            pairs, records = self._pairs(ss)
            write_jsonl(os.path.join(it_dir, "pairs.jsonl"), [p.to_dict() for p in records])
            train_path = os.path.join(it_dir, "train.json")
            train = self._read_shared(train_path)
            if train is None:
                t0 = time.perf_counter()
                log.info("%s iter %d: training on %d pairs from %d tasks", method, k, len(pairs),
                         len({p.task_id for p in records}))
                train = self._train_dpo(method_dir, pairs) if method == "dpo" else self._train_rlaif(method_dir, pairs, k)
                train["seconds"] = time.perf_counter() - t0
                train["num_pairs"] = len(pairs)
                self._save_policy(it_dir)
                write_json(train_path, train)
            else:
                self.policy = self._policy_after(method_dir, k)
            timer.add("training", train["seconds"])
            metrics = self.evaluate(self.policy, it_dir, f"{method}/{k}")
            timer.add("evaluation", metrics["time_s"]["evaluation"])
            train_samples = _train_sample_stats(ss)
            record = {"iteration": k, **_metric_view(metrics), "train_samples": train_samples,
                      "num_pairs": train["num_pairs"], "time_s": timer.seconds,
                      "train": {kk: v for kk, v in train.items() if kk in ("loss", "reward_model_loss")}}
            log.info("%s iter %d: %s | train-task pass rate %.3f, %d pairs | time: sampling %.1fs, execution "
                     "(not overlapped) %.1fs, training %.1fs, evaluation %.1fs", method, k, _fmt_metrics(metrics),
                     train_samples["pass_rate"], train["num_pairs"], timer.seconds["sampling"],
                     timer.seconds["execution"], timer.seconds["training"], timer.seconds["evaluation"])
            self._log_eval(method, k, metrics, it_dir)
            w = self._writer(method)
            w.write_scalars(k, {"time/sampling_s": timer.seconds["sampling"],
                                "time/execution_s": timer.seconds["execution"],
                                "time/training_s": timer.seconds["training"],
                                "time/evaluation_s": timer.seconds["evaluation"],
                                "feedback/num_pairs": train["num_pairs"],
                                "feedback/train_pass_rate": train_samples["pass_rate"]})
            w.flush()
            write_json(os.path.join(it_dir, "iteration.json"), record)
            iterations.append(record)
        final = iterations[-1]
        return {"iterations": iterations, "final": _metric_view(final)}

    # ------------------------------------------------------------------ everything
    def run(self) -> dict:
        import jax

        from sandbox import Executor

        from ieta_jax import distributed, report

        c = self.config
        t0 = time.perf_counter()
        self._setup()
        methods = list(METHODS) if c.method == "all" else [c.method]
        if distributed.is_primary():
            executor = Executor(backend=c.sandbox.backend, timeout_s=c.timeout_s, memory_mb=c.memory_mb,
                                trace=c.trace, **_executor_kwargs(c))
            log.info("sandbox executor (%s) started on process 0 of %d", c.sandbox.backend, jax.process_count())
        else:
            executor = contextlib.nullcontext()
            log.info("process %d: no sandbox executor here (process 0 runs the programs and broadcasts verdicts)",
                     jax.process_index())
        with executor as ex:
            self.executor = ex
            initial = self.evaluate(self._load_policy(), os.path.join(self.workdir, "initial"), "initial")
            log.info("starting policy: %s", _fmt_metrics(initial))
            results = {"meta": self._meta(), "methods": {}}
            for m in methods:
                results["methods"][m] = self.run_method(m, initial)
                write_json(os.path.join(self.workdir, "results.json"), results)
        self.executor = None
        results["meta"]["seconds"] = time.perf_counter() - t0
        write_json(os.path.join(self.workdir, "results.json"), results)
        for w in self.writers.values():
            w.close()
        if distributed.is_primary():
            path = report.write_report(results, self.workdir)
            log.info("results: %s; report: %s (%.0fs this invocation)", os.path.join(self.workdir, "results.json"),
                     path, time.perf_counter() - t0)
            print(report.summary_table(results))
        distributed.barrier("experiment_done")  # every process returns once the workdir is complete
        return results

    def _meta(self) -> dict:
        c = self.config
        ws = self._read_shared(os.path.join(self.model_dir, "warm_start.json")) if c.model == "tiny" else None
        meta = {"dataset": c.dataset, "model": c.model, "num_iterations": c.num_iterations,
                "num_train_tasks": len(self.train_tasks), "num_eval_tasks": len(self.eval_tasks),
                "num_samples": c.num_samples, "eval_num_samples": c.eval_num_samples,
                "pass_at_k": list(c.pass_at_k), "sandbox": c.sandbox.backend}
        if ws:
            meta["warm_start"] = {k: v for k, v in ws.items() if k != "loss"}
        return meta


def _executor_kwargs(c) -> dict:
    """Executor sizing: local pools take `workers`; on Ray it is the sandboxes per actor (one actor per node)."""
    if c.sandbox.backend != "ray":
        return {"workers": c.sandbox.workers or None}
    kwargs = {"workers": None, "workers_per_actor": c.sandbox.workers or None}
    if c.sandbox.ray_address:
        kwargs["ray_address"] = c.sandbox.ray_address
    if c.sandbox.ray_node_resource:
        kwargs["node_resource"] = c.sandbox.ray_node_resource
    return kwargs


def _metric_view(m: dict) -> dict:
    keys = [k for k in m if k.startswith("pass@")] + ["execution_rate", "error_frequencies", "error_types"]
    return {k: m[k] for k in keys if k in m}


def _fmt_metrics(m: dict) -> str:
    parts = [f"{k} {v:.3f}" for k, v in m.items() if k.startswith("pass@")]
    parts.append(f"exec rate {m['execution_rate']:.3f}")
    parts.append("errors " + ", ".join(f"{k} {v:.3f}" for k, v in m["error_frequencies"].items()))
    return "; ".join(parts)


def _train_sample_stats(ss: SampleSet) -> dict:
    statuses = [r["result"]["status"] for r in ss.rows]
    return {"num": len(statuses), "pass_rate": sum(s == "passed" for s in statuses) / max(1, len(statuses))}


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Entry point used by ``launch.main``."""
    _setup_logging(workdir, config.debug)
    return Experiment(config, workdir).run()


def _setup_logging(workdir: str, debug: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    path = os.path.join(workdir, "log.txt")
    if _is_primary() and not any(isinstance(h, logging.FileHandler) and h.baseFilename == os.path.abspath(path) for h in root.handlers):
        os.makedirs(workdir, exist_ok=True)
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if not debug:
        # Orbax / absl log every checkpoint step at INFO; keep the console readable.
        for name in ("absl", "orbax", "jax._src"):
            logging.getLogger(name).setLevel(logging.WARNING)
