"""Evaluation on the held-out tasks: pass@k, execution rate, error frequencies; TensorBoard scalars and samples."""
from __future__ import annotations

import json
import os
import time

from ieta_jax import distributed, evaluation
from ieta_jax.experiment.policy import Policy
from ieta_jax.experiment.rollout import samples_stage, stable_seed
from ieta_jax.experiment.start import Run


class MetricWriters:
    """One TensorBoard run per name (``<workdir>/tensorboard/<name>``), opened on first use."""

    def __init__(self, root: str):
        self.root = root
        self._open: dict = {}

    def __call__(self, name: str):
        from ieta_jax.metric_writer import MetricWriter

        if name not in self._open:
            self._open[name] = MetricWriter(os.path.join(self.root, name))
        return self._open[name]

    def close(self) -> None:
        for w in self._open.values():
            w.close()


def evaluate(run: Run, policy: Policy, stage: str, seed_key: str) -> dict:
    """Held-out metrics of ``policy``, stored in ``<stage>/eval.json`` (read back when a previous run finished it)."""
    c = run.config

    def compute() -> dict:
        t0 = time.perf_counter()
        ss = samples_stage(run, os.path.join(stage, "eval_samples.jsonl"), policy, run.eval_tasks, c.eval_num_samples,
                           temperature=c.eval_temperature, seed=stable_seed(c.seed, "eval", seed_key),
                           desc=f"eval {seed_key}")
        by_task = {tid: [r["result"] for r in rows] for tid, rows in ss.by_task().items()}
        summary = evaluation.summarize(by_task, ks=tuple(c.pass_at_k))
        return {**summary["pass_at_k"], "execution_rate": summary["execution_rate"],
                "error_frequencies": summary["error_frequencies"], "error_types": summary["error_types"],
                "num_samples": summary["num_samples"], "num_tasks": summary["num_tasks"],
                "time_s": {"evaluation": time.perf_counter() - t0, **{f"eval_{k}": v for k, v in ss.time_s.items()}}}

    return run.workdir.cached_json(os.path.join(stage, "eval.json"), compute)


def metric_view(m: dict) -> dict:
    """The metrics results.json keeps per iteration."""
    keys = [k for k in m if k.startswith("pass@")] + ["execution_rate", "error_frequencies", "error_types"]
    return {k: m[k] for k in keys if k in m}


def format_metrics(m: dict) -> str:
    parts = [f"{k} {v:.3f}" for k, v in m.items() if k.startswith("pass@")]
    parts.append(f"exec rate {m['execution_rate']:.3f}")
    parts.append("errors " + ", ".join(f"{k} {v:.3f}" for k, v in m["error_frequencies"].items()))
    return "; ".join(parts)


def log_eval(run: Run, name: str, step: int, metrics: dict, stage: str) -> None:
    """Scalars ``eval/*`` and a few held-out programs with verdicts and traces (Text tab) at ``step``."""
    w = run.writers(name)
    scalars = {f"eval/{k}": v for k, v in metrics.items() if k.startswith("pass@")}
    scalars["eval/execution_rate"] = metrics["execution_rate"]
    for k, v in metrics["error_frequencies"].items():
        scalars[f"eval/error_frequency/{k}"] = v
    w.write_scalars(step, scalars)
    if distributed.is_primary():  # the writer is a no-op on the other processes
        from ieta_jax import workdir as workdir_lib

        rows = workdir_lib.read_jsonl(run.workdir.path(stage, "eval_samples.jsonl")) or []
        w.write_text(step, sample_texts(rows, run.config.num_text_samples))
    w.flush()


def sample_texts(rows: list[dict], limit: int) -> dict[str, str]:
    """One passing program first, then failures of different kinds, as markdown for TensorBoard."""
    picked, seen = [], set()
    for want in ("passed", None):
        for r in rows:
            key = r["result"]["status"] if want is None else "passed"
            if len(picked) >= limit:
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
