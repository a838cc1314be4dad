"""Evaluation on the held-out tasks: repair episodes scored by pass@k (per turn), repair rate, execution rate,
error frequencies; TensorBoard scalars and samples.

With the synthetic suite, the whole-family split ``test_families`` (families never seen in training) is evaluated
beside the parameter-held-out ``eval_split``, under the metrics' ``test_families`` key.
"""
from __future__ import annotations

import functools
import json
import os
import time

from ieta_jax import distributed
from ieta_jax.experiment import episodes as episodes_lib
from ieta_jax.experiment.policy import Policy
from ieta_jax.experiment.rollout import stable_seed
from ieta_jax.experiment.start import Run

FAMILIES = "test_families"


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


@functools.lru_cache(maxsize=4)
def _family_tasks(seed: int, limit: int) -> tuple:
    from ieta_jax import data

    return tuple(data.load_tasks("synthetic", split=FAMILIES, seed=seed, limit=limit or None))


def family_tasks(run: Run) -> list:
    """The whole-family held-out split (synthetic suite only, and only when it is not already ``eval_split``)."""
    c = run.config
    if c.dataset != "synthetic" or c.eval_split in (FAMILIES, "heldout_families"):
        return []
    return list(_family_tasks(c.seed, c.num_family_tasks or c.num_eval_tasks))


def _evaluate_tasks(run: Run, policy: Policy, tasks: list, stage: str, seed_key: str) -> dict:
    c = run.config

    def compute() -> dict:
        t0 = time.perf_counter()
        es = episodes_lib.episodes_stage(run, os.path.join(stage, "eval_samples.jsonl"), policy, tasks,
                                         c.eval_num_samples, temperature=c.eval_temperature,
                                         seed=stable_seed(c.seed, "eval", seed_key), desc=f"eval {seed_key}")
        metrics = episodes_lib.summarize_episodes(es, tuple(c.pass_at_k), c.max_turns)
        return {**metrics, "time_s": {"evaluation": time.perf_counter() - t0,
                                      **{f"eval_{k}": v for k, v in es.time_s.items()}}}

    return run.workdir.cached_json(os.path.join(stage, "eval.json"), compute)


def evaluate(run: Run, policy: Policy, stage: str, seed_key: str) -> dict:
    """Held-out metrics of ``policy``, stored in ``<stage>/eval.json`` (and ``<stage>/test_families/eval.json``),
    read back when a previous run finished them."""
    metrics = _evaluate_tasks(run, policy, run.eval_tasks, stage, seed_key)
    families = family_tasks(run)
    if families:
        fam = _evaluate_tasks(run, policy, families, os.path.join(stage, FAMILIES), f"{seed_key}/{FAMILIES}")
        metrics = {**metrics, FAMILIES: fam,
                   "time_s": {**metrics["time_s"],
                              "evaluation": metrics["time_s"]["evaluation"] + fam["time_s"]["evaluation"]}}
    return metrics


def _is_metric(key: str) -> bool:
    return (key.startswith(("pass@", "turn_")) or
            key in ("execution_rate", "error_frequencies", "error_types", "repair_rate", "repair_rate_stderr",
                    "num_turn_1_failures"))


def metric_view(m: dict) -> dict:
    """The metrics results.json keeps per iteration (the whole-family split's under ``test_families``)."""
    view = {k: v for k, v in m.items() if _is_metric(k)}
    if FAMILIES in m:
        view[FAMILIES] = {k: v for k, v in m[FAMILIES].items() if _is_metric(k)}
    return view


def scalars(m: dict, prefix: str = "eval") -> dict:
    """TensorBoard scalars of a metrics dict: ``eval/pass@1``, ``eval/turn_2/pass@1``, ``eval/repair_rate``,
    ``eval/error_frequency/<bucket>`` (per turn too), ``eval_test_families/...``."""
    out = {}
    for k, v in m.items():
        if k.endswith("error_frequencies"):
            head = k[:-len("error_frequencies")]
            out.update({f"{prefix}/{head}error_frequency/{b}": f for b, f in v.items()})
        elif _is_metric(k) and isinstance(v, (int, float)) and k != "error_types":
            out[f"{prefix}/{k}"] = v
    if FAMILIES in m:
        out.update(scalars(m[FAMILIES], f"eval_{FAMILIES}"))
    return out


def format_metrics(m: dict) -> str:
    parts = [f"{k} {v:.3f}" for k, v in m.items() if k.startswith("pass@")]
    parts.append(f"exec rate {m['execution_rate']:.3f}")
    parts.append("errors " + ", ".join(f"{k} {v:.3f}" for k, v in m["error_frequencies"].items()))
    if "turn_1/pass@1" in m:
        parts.append(f"turn-1 pass@1 {m['turn_1/pass@1']:.3f}")
    if m.get("repair_rate") is not None:
        se = m.get("repair_rate_stderr")
        parts.append(f"repair rate {m['repair_rate']:.3f}{'' if se is None else f' ± {se:.3f}'} "
                     f"of {m['num_turn_1_failures']}")
    if FAMILIES in m:
        parts.append(f"{FAMILIES}: pass@1 {m[FAMILIES]['pass@1']:.3f}" if "pass@1" in m[FAMILIES] else FAMILIES)
    return "; ".join(parts)


def log_eval(run: Run, name: str, step: int, metrics: dict, stage: str) -> None:
    """Scalars ``eval/*`` and a few held-out programs with verdicts and traces (Text tab) at ``step``."""
    w = run.writers(name)
    w.write_scalars(step, scalars(metrics))
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
