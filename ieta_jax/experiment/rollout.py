"""Rollout: sample completions from a policy and execute them in the sandbox fleet, batch by batch.

Each generated batch is submitted to the sandboxes at once (``Executor.submit``), so they run it while the
policy samples the next batch. Process 0 runs the programs; the verdicts are broadcast, so every process
holds the same rows.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import zlib

from ieta_jax import distributed
from ieta_jax.experiment.policy import Policy
from ieta_jax.experiment.start import Run

log = logging.getLogger(__name__)


def stable_seed(*parts) -> int:
    """A 31-bit seed from strings/ints that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


@dataclasses.dataclass
class SampleSet:
    """Samples of one stage: one row per completion, in task-major order."""

    rows: list[dict]           # task_id, sample, completion, program, result (dict)
    time_s: dict[str, float]   # sampling, execution (wait not hidden by sampling), sandbox_busy, total

    def by_task(self) -> dict[str, list[dict]]:
        return group_by_task(self.rows)

    def pair_groups(self, relabel: int = 0):
        """(task_id, prompt text or None = the task's own prompt, rows): the samples that share a prompt
        (``relabel``: see ``episodes.EpisodeSet.pair_groups``; one turn has no repair groups)."""
        return [(tid, None, rows) for tid, rows in self.by_task().items()]


def group_by_task(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["task_id"], []).append(r)
    return out


def request(run: Run, task, completion: str, request_id: str, *, trace: bool | None = None,
            public: bool = False) -> dict:
    """The sandbox request for one completion, with the run's limits (a task may ask for a shorter timeout);
    ``public=True``: against the task's public test (repair feedback) instead of its hidden one (the score)."""
    from ieta_jax.data import task as task_lib

    c = run.config
    timeout = min(c.timeout_s, float(task.metadata.get("timeout_s", c.timeout_s)))
    return task_lib.to_request(task, completion, request_id, trace=c.trace if trace is None else trace,
                               timeout_s=timeout, memory_mb=c.memory_mb, public=public)


def sample_and_execute(run: Run, policy: Policy, tasks: list, n: int, *, temperature: float, seed: int,
                       desc: str, prompts: list[str] | None = None, public: bool = False) -> SampleSet:
    """``n`` completions per task from ``policy``, each executed against the task's hidden tests.

    ``prompts`` (one per task) replace ``policy.prompt(task)``, e.g. the repair prompt of a later turn.
    ``public=True``: each program of a task with a public test also runs against it (trace on), in the same
    batch; the row's ``public_result`` is that verdict (None for a task without public test), the feedback of
    a repair turn. Scores and rewards come only from ``result`` (the hidden tests). Identical requests run once
    and share their verdict (``sandbox.reuse_verdicts``, ``_Runs``)."""
    from tqdm.auto import tqdm

    from ieta_jax.data import completions as comp_lib

    c = run.config
    chat = c.prompt_format == "chat"
    primary = distributed.is_primary()
    per_batch = max(1, c.sample_batch_size // n)  # prompts per generate() call
    texts = [policy.prompt(t) for t in tasks] if prompts is None else list(prompts)
    # Batches of similar prompt length (the longest prompt of a batch sets its padded length, and sampling cost
    # grows with it: repair prompts range from ~100 to max_prompt_len tokens); rows go back to task order below.
    order = sorted(range(len(tasks)), key=lambda i: len(texts[i]))
    futures, meta = [], []
    runs = _Runs(run) if primary else None
    t_sample = 0.0
    t_start = time.perf_counter()
    bar = tqdm(total=len(tasks) * n, desc=desc, unit="sample", leave=False, disable=not primary)
    for b, first in enumerate(range(0, len(tasks), per_batch)):
        batch = order[first:first + per_batch]
        t0 = time.perf_counter()
        samples = policy.generate([texts[i] for i in batch], n, temperature, c.top_p, c.max_new_tokens,
                                  stable_seed(seed, b))
        t_sample += time.perf_counter() - t0
        for i, outs in zip(batch, samples):
            t = tasks[i]
            for j, raw in enumerate(outs):
                completion = comp_lib.completion_from_sample(raw, t, chat=chat)
                req = request(run, t, completion, f"{t.task_id}#{j}")
                pub = (request(run, t, completion, f"{t.task_id}#{j}/public", trace=True, public=True)
                       if public and t.public_test is not None else None)
                if primary:  # process 0 runs the programs; the others get the verdicts below
                    futures.append((runs.submit(req), pub and runs.submit(pub)))
                meta.append({"task_id": t.task_id, "sample": j, "completion": completion, "program": req["solution"]})
        bar.update(len(batch) * n)
    t_wait = time.perf_counter()
    results, busy = distributed.on_primary(lambda: ([(f.result(), p and p.result()) for f, p in futures],
                                                    runs.busy_s()))
    bar.close()
    rows = [{**m, "result": res, **({"public_result": pub} if public else {})} for m, (res, pub) in zip(meta, results)]
    position = {i: k for k, i in enumerate(order)}  # generation order -> task order (rows of a task stay together)
    rows = [rows[position[i] * n + j] for i in range(len(tasks)) for j in range(n)]
    now = time.perf_counter()
    times = {"sampling": t_sample, "execution": now - t_wait, "sandbox_busy": busy, "total": now - t_start}
    log.info("%s: %d samples; sampling %.1fs, execution not hidden by sampling %.1fs (sandbox busy %.1fs), "
             "total %.1fs", desc, len(rows), t_sample, now - t_wait, busy, now - t_start)
    return SampleSet(rows, times)


class _Submission:
    """A request's future, answered as a result dict carrying that request's own id."""

    def __init__(self, future, request_id: str):
        self.future, self.request_id = future, request_id

    def result(self) -> dict:
        return {**self.future.result().to_dict(), "id": self.request_id}


class _Runs:
    """One rollout's sandbox runs. With ``sandbox.reuse_verdicts`` an identical request (same program, tests and
    limits; only the id differs) is not run again: it shares the first one's verdict. A deterministic program's
    verdict cannot differ between runs; a nondeterministic one gets a single draw for all its copies (each copy's
    verdict has the same distribution, so pass@1 stays unbiased). The judge computes every verdict either way."""

    def __init__(self, run: Run):
        self.executor, self.reuse = run.executor, run.config.sandbox.reuse_verdicts
        self.futures: dict[str, object] = {}

    def submit(self, req: dict) -> _Submission:
        key = json.dumps({k: v for k, v in req.items() if k != "id"}, sort_keys=True) if self.reuse else req["id"]
        if key not in self.futures:
            self.futures[key] = self.executor.submit(req)
        return _Submission(self.futures[key], req["id"])

    def busy_s(self) -> float:
        """Sandbox time of the requests that ran (a shared verdict's run counted once)."""
        return sum(f.result().duration_s or 0.0 for f in self.futures.values())


def samples_stage(run: Run, rel: str | None, policy: Policy, tasks: list, n: int, *, temperature: float, seed: int,
                  desc: str, public: bool = False) -> SampleSet:
    """``sample_and_execute``, stored at ``rel`` (+ ``.time.json``); a finished stage is read back instead.
    ``rel=None``: not stored (an RL step's rollout, which its checkpoint makes resumable)."""
    if rel is None:
        return sample_and_execute(run, policy, tasks, n, temperature=temperature, seed=seed, desc=desc, public=public)
    rows, time_s = run.workdir.read_jsonl(rel), run.workdir.read_json(rel + ".time.json")
    if rows is not None and time_s is not None:
        log.info("%s: %d samples already in %s, reused (finished earlier or shared)", desc, len(rows),
                 run.workdir.path(rel))
        return SampleSet(rows, time_s)
    ss = sample_and_execute(run, policy, tasks, n, temperature=temperature, seed=seed, desc=desc, public=public)
    run.workdir.write_jsonl(rel, ss.rows)
    run.workdir.write_json(rel + ".time.json", ss.time_s)
    return ss
