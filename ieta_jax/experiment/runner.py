"""The runner: start, evaluate the starting policy, then per method a short loop over iterations.

An iteration: sample + execute repair episodes of the train tasks with the current policy (iteration 1 shares the
starting policy's episodes across methods), build pairs (turn-1 pairs and repair pairs), train (the method function returns the trained policy), save it, evaluate
it, record. Every stage's output is read back when a previous run finished it, so a killed run restarted with
the same command continues where it stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

import ml_collections

from ieta_jax import distributed
from ieta_jax.experiment import episodes, heldout, library_configs, methods, policy as policy_lib, rollout, signals
from ieta_jax.experiment.start import Run, compilation_cache, start_run

log = logging.getLogger(__name__)

METHODS = ("baseline", "dpo", "rlaif")
TIME_KEYS = ("sampling", "execution", "training", "evaluation")


@dataclasses.dataclass
class Models:
    """What an iteration starts from: the policy (and for RLAIF the reward model); None = not loaded yet."""

    policy: policy_lib.LocalPolicy | None = None
    reward_model: object = None


def _models_after(run: Run, start_policy: policy_lib.LocalPolicy, method: str, k: int) -> Models:
    """The models after iteration ``k`` of ``method`` as saved in the workdir (``k = 0``: the starting point)."""
    from ieta_jax import models

    c = run.config
    if k == 0:
        rm = policy_lib.load_model(run.model_dir, c, run.mesh, models.RewardModel) if method == "rlaif" else None
        return Models(start_policy, rm)
    it_dir = run.workdir.path(method, f"iter_{k}")
    policy = start_policy.with_model(policy_lib.load_model(os.path.join(it_dir, "policy"), c, run.mesh))
    rm = (policy_lib.load_model(os.path.join(it_dir, "reward_model"), c, run.mesh, models.RewardModel)
          if method == "rlaif" else None)
    return Models(policy, rm)


def run_iteration(run: Run, method: str, k: int, current: Models, start_policy) -> tuple[dict, Models]:
    """One iteration of ``method`` from ``current``: (the iteration's record, the models after it)."""
    c = run.config
    it = os.path.join(method, f"iter_{k}")
    it_dir = run.workdir.path(it)
    times = dict.fromkeys(TIME_KEYS, 0.0)
    # Iteration 1 samples the shared starting policy: every method reuses the same samples.
    samples = episodes.episodes_stage(
        run, os.path.join("initial", "train_samples.jsonl") if k == 1 else os.path.join(it, "samples.jsonl"),
        current.policy, run.train_tasks, c.num_samples, temperature=c.temperature,
        seed=rollout.stable_seed(c.seed, "train", 1) if k == 1 else rollout.stable_seed(c.seed, method, k, "train"),
        desc=f"{method} iter {k}: sample+execute", fixes=c.repair_num_samples)
    times["sampling"], times["execution"] = samples.time_s["sampling"], samples.time_s["execution"]
    pairs, records, judge_summary = signals.iteration_pairs(run, method, it, samples, current.policy)
    run.workdir.write_jsonl(os.path.join(it, "pairs.jsonl"), [p.to_dict() for p in records])

    train = run.workdir.read_json(os.path.join(it, "train.json"))
    if train is None:
        t0 = time.perf_counter()
        log.info("%s iter %d: training on %d pairs from %d tasks", method, k, len(pairs),
                 len({p.task_id for p in records}))
        if method == "dpo":
            trained = methods.train_dpo(run, current.policy, pairs, k, it_dir)
        else:
            trained = methods.train_rlaif(run, current.policy, current.reward_model, start_policy.model, pairs, k,
                                          it_dir)
        tokenizer = current.policy.tokenizer
        policy_lib.save_model(trained.policy.model, os.path.join(it_dir, "policy"), tokenizer=tokenizer)
        if trained.reward_model is not None:
            policy_lib.save_model(trained.reward_model, os.path.join(it_dir, "reward_model"))
        train = {**trained.record, "seconds": time.perf_counter() - t0, "num_pairs": len(pairs)}
        run.workdir.write_json(os.path.join(it, "train.json"), train)
        after = Models(trained.policy, trained.reward_model)
    else:  # trained and saved before a restart
        after = _models_after(run, start_policy, method, k)
    times["training"] = train["seconds"]

    metrics = heldout.evaluate(run, after.policy, it, f"{method}/{k}")
    times["evaluation"] = metrics["time_s"]["evaluation"]
    stats = signals.sample_stats(samples)
    record = {"iteration": k, **heldout.metric_view(metrics), "train_samples": stats, "num_pairs": train["num_pairs"],
              "time_s": times, "train": {kk: v for kk, v in train.items() if kk in ("loss", "reward_model_loss")}}
    if judge_summary is not None:
        record["judge"] = judge_summary
    log.info("%s iter %d: %s | train-task pass rate %.3f, %d pairs | time: sampling %.1fs, execution "
             "(not overlapped) %.1fs, training %.1fs, evaluation %.1fs", method, k, heldout.format_metrics(metrics),
             stats["pass_rate"], train["num_pairs"], *(times[key] for key in TIME_KEYS))
    heldout.log_eval(run, method, k, metrics, it)
    w = run.writers(method)
    w.write_scalars(k, {**{f"time/{key}_s": times[key] for key in TIME_KEYS}, "feedback/num_pairs": train["num_pairs"],
                        "feedback/train_pass_rate": stats["pass_rate"]})
    w.flush()
    run.workdir.write_json(os.path.join(it, "iteration.json"), record)
    return record, after


def run_method(run: Run, method: str, start_policy, initial: dict) -> dict:
    """``{"iterations": [...], "final": ...}`` of one method; iteration 0 is the starting policy."""
    iterations = [{"iteration": 0, **heldout.metric_view(initial)}]
    heldout.log_eval(run, method, 0, initial, "initial")
    current = None  # loaded when the first unfinished iteration needs it
    for k in range(1, run.config.num_iterations + 1 if method != "baseline" else 1):
        done = run.workdir.read_json(os.path.join(method, f"iter_{k}", "iteration.json"))
        if done is not None:
            iterations.append(done)
            current = None
            continue
        current = current or _models_after(run, start_policy, method, k - 1)
        record, current = run_iteration(run, method, k, current, start_policy)
        iterations.append(record)
    return {"iterations": iterations, "final": heldout.metric_view(iterations[-1])}


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Entry point of ``launch.main``: every configured method in ``workdir``; resumable."""
    import jax

    from sandbox import Executor

    from ieta_jax import report

    t0 = time.perf_counter()
    run = start_run(config, workdir)
    setup_logging(run.workdir.root, config.debug)
    if distributed.is_multiprocess():
        log.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    if distributed.is_primary():
        executor = Executor(**library_configs.executor_kwargs(config))
        log.info("sandbox executor (%s) started on process 0 of %d", config.sandbox.backend, jax.process_count())
    else:
        executor = contextlib.nullcontext()
        log.info("process %d: no sandbox executor here (process 0 runs the programs and broadcasts verdicts)",
                 jax.process_index())
    writers = heldout.MetricWriters(run.workdir.path("tensorboard"))
    with executor as ex, compilation_cache(config, run.workdir.root):
        run = dataclasses.replace(run, executor=ex, writers=writers)
        run = dataclasses.replace(run, judge=signals.make_judge(run))  # None unless RLAIF asks an AI judge
        if config.policy:  # a hosted model: evaluated only (start-up refuses methods that train)
            start_policy = policy_lib.EndpointPolicy(config, run.workdir.root)
        else:
            if config.model == "tiny":
                from ieta_jax import tiny

                tiny.ensure_tiny_model(config, run.workdir.root, run.mesh, executor=ex)
            start_policy = policy_lib.LocalPolicy(
                run.model if run.model is not None else policy_lib.load_model(run.model_dir, config, run.mesh),
                policy_lib.load_tokenizer(run.model_dir),
                max_prompt_len=config.max_prompt_len, top_k=config.top_k, chat=config.prompt_format == "chat")
        initial = heldout.evaluate(run, start_policy, "initial", "initial")
        log.info("starting policy: %s", heldout.format_metrics(initial))
        results = {"meta": _meta(run), "methods": {}}
        for m in (METHODS if config.method == "all" else (config.method,)):
            results["methods"][m] = run_method(run, m, start_policy, initial)
            run.workdir.write_json("results.json", results)
    results["meta"]["seconds"] = time.perf_counter() - t0
    usage = {"policy": start_policy.usage() if config.policy else None,
             "judge": run.judge.usage.to_dict() if run.judge is not None else None}
    if any(usage.values()):  # this invocation's requests; answers from the cache count as cache_hits
        results["meta"]["api_usage"] = {k: v for k, v in usage.items() if v is not None}
    run.workdir.write_json("results.json", results)
    writers.close()
    if distributed.is_primary():
        path = report.write_report(results, run.workdir.root)
        log.info("results: %s; report: %s (%.0fs this invocation)", run.workdir.path("results.json"), path,
                 time.perf_counter() - t0)
        print(report.summary_table(results))
    distributed.barrier("experiment_done")  # every process returns once the workdir is complete
    return results


def _meta(run: Run) -> dict:
    c = run.config
    ws = (run.workdir.read_json(os.path.join(run.model_dir, "warm_start.json"))
          if c.model == "tiny" and not c.policy else None)
    model = f"{c.policy_model_name} at {c.policy}" if c.policy else c.model
    meta = {"dataset": c.dataset, "model": model, "num_iterations": c.num_iterations,
            "num_train_tasks": len(run.train_tasks), "num_eval_tasks": len(run.eval_tasks),
            "num_samples": c.num_samples, "eval_num_samples": c.eval_num_samples,
            "pass_at_k": list(c.pass_at_k), "max_turns": c.max_turns, "sandbox": c.sandbox.backend}
    if ws:
        meta["warm_start"] = {k: v for k, v in ws.items() if k != "loss"}
    return meta


def setup_logging(workdir: str, debug: bool) -> None:
    """INFO (DEBUG with ``debug``) to the console and, on process 0, to ``<workdir>/log.txt``."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    consoles = [h for h in root.handlers if type(h) is logging.StreamHandler]
    if not consoles:
        consoles = [logging.StreamHandler()]
        root.addHandler(consoles[0])
    for h in consoles:
        h.setFormatter(fmt)
    path = os.path.abspath(os.path.join(workdir, "log.txt"))
    if distributed.is_primary() and not any(isinstance(h, logging.FileHandler) and h.baseFilename == path
                                            for h in root.handlers):
        os.makedirs(workdir, exist_ok=True)
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if not debug:
        # Orbax / absl log every checkpoint step at INFO; keep the console readable.
        for name in ("absl", "orbax", "jax._src"):
            logging.getLogger(name).setLevel(logging.WARNING)
