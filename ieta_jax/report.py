"""results.json -> report.md with the summary table, per-method error tables and PNG plots.

Every number in the report is read from ``results.json`` as the run wrote it; nothing is derived
except the error reduction (initial - final, and its relative change). Plots use matplotlib's Agg
backend so they render on headless hosts.

    python -m ieta_jax.report --results runs/smoke/results.json   # rewrites runs/smoke/report.md
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any

SUMMARY_KS = (1, 10, 100)
ERROR_ORDER = ("IndexError", "TypeError", "ValueError", "ZeroDivisionError", "Other")
METHOD_ORDER = ("baseline", "dpo", "rlaif")


class ReportError(ValueError):
    """results.json that cannot be reported as given; the message names the file and the field."""


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# Metric keys the renderer parses: pass@<k> (k >= 1) and the per-turn copies turn_<t>/<metric>.
PASS_KEY = re.compile(r"pass@([1-9][0-9]*)")
TURN_KEY = re.compile(r"turn_([0-9]+)/(.+)", re.DOTALL)


def _key_int(pattern: re.Pattern, key: str) -> int | None:
    """The integer a metric key carries (k of pass@k, t of turn_t/...); None when ``key`` is not of that form."""
    match = pattern.fullmatch(key)
    try:
        return int(match[1]) if match else None
    except ValueError:  # more digits than int() converts
        return None


def _check_entry(where: str, key: str, name: str, v: Any) -> None:
    """Entry ``key`` of the metrics at ``where``, a pass@<k>, execution_rate or error_frequencies of the last
    turn (``name`` is ``key``) or of turn t (``key`` is turn_<t>/``name``)."""
    if name.startswith("pass@") and _key_int(PASS_KEY, name) is None:
        raise ReportError(f"{where}: key {key!r} is not pass@<k> with k a positive integer")
    if name.startswith("pass@") or name == "execution_rate":
        if v is not None and not _number(v):
            raise ReportError(f"{where}.{key} must be a number or null, got {v!r}")
    elif name == "error_frequencies" and (not isinstance(v, dict) or not all(_number(x) for x in v.values())):
        raise ReportError(f"{where}.{key} must map error types to numbers")


def _check_metrics(where: str, m: Any, families: bool = True) -> None:
    """The metrics of one evaluation as the tables and plots read them; keys they never read are left alone."""
    if not isinstance(m, dict):
        raise ReportError(f"{where} must be an object, got {type(m).__name__}")
    if not _number(m.get("execution_rate")):
        raise ReportError(f"{where}.execution_rate is missing or not a number")
    for k, v in m.items():
        turn = TURN_KEY.fullmatch(k)
        _check_entry(where, k, turn[2] if turn else k, v)
    for k in ("repair_rate", "repair_rate_stderr"):
        if m.get(k) is not None and not _number(m[k]):
            raise ReportError(f"{where}.{k} must be a number or null, got {m[k]!r}")
    failures = m.get("num_turn_1_failures")
    if failures is not None and (isinstance(failures, bool) or not isinstance(failures, int) or failures < 0):
        raise ReportError(f"{where}.num_turn_1_failures must be a count or null, got {failures!r}")
    if families and "test_families" in m:  # the whole-family split: the same metrics, one level down
        _check_metrics(f"{where}.test_families", m["test_families"], families=False)
    train = m.get("train", {})  # losses may be nan/inf (a diverged run still gets its report)
    if not isinstance(train, dict) or not all(isinstance(v, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in train.values()):
        raise ReportError(f"{where}.train must map series names to lists of numbers")
    judge = m.get("judge") or {}
    if not isinstance(judge, dict) or not all(v is None or _number(v) for v in judge.values()):
        raise ReportError(f"{where}.judge must map counts to numbers")
    times = m.get("time_s") or {}
    if not isinstance(times, dict) or not all(_number(v) for v in times.values()):
        raise ReportError(f"{where}.time_s must map stages to seconds")


def validate_results(results: Any, source: str = "results") -> dict:
    """Check every field the report reads, so a bad file is refused before anything is written."""
    if not isinstance(results, dict):
        raise ReportError(f"{source}: expected a JSON object, got {type(results).__name__}")
    methods = results.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise ReportError(f"{source}: no methods to report (field 'methods' is missing or empty; "
                          "is the run still at its first evaluation?)")
    meta = results.get("meta", {})
    if not isinstance(meta, dict):
        raise ReportError(f"{source}: field 'meta' must be an object")
    usage = meta.get("api_usage") or {}
    if not isinstance(usage, dict) or not all(isinstance(u, dict) and all(_number(v) for v in u.values())
                                              for u in usage.values()):
        raise ReportError(f"{source}: meta.api_usage must map roles to objects of counts")
    ks = meta.get("pass_at_k", [])
    if not isinstance(ks, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks):
        raise ReportError(f"{source}: meta.pass_at_k must be a list of positive integers, got {ks!r}")
    for name, m in methods.items():
        where = f"{source}: methods.{name}"
        if not isinstance(m, dict) or not isinstance(m.get("iterations"), list) or not m["iterations"]:
            raise ReportError(f"{where}.iterations is missing or empty")
        for i, it in enumerate(m["iterations"]):
            _check_metrics(f"{where}.iterations[{i}]", it)
            if isinstance(it.get("iteration"), bool) or not isinstance(it.get("iteration"), int):
                raise ReportError(f"{where}.iterations[{i}].iteration is missing or not an integer")
        if "final" not in m:
            raise ReportError(f"{where}.final is missing (the method has not finished)")
        _check_metrics(f"{where}.final", m["final"])
    return results


def load_results(path: str) -> dict:
    """results.json, validated; ReportError (one line) for a missing, unreadable, corrupt or partial file."""
    if not os.path.exists(path):
        raise ReportError(f"results file not found: {path}")
    if os.path.isdir(path):
        raise ReportError(f"{path} is a directory; pass the results.json inside it")
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read {path}: {e}") from None
    if not text.strip():
        raise ReportError(f"{path} is empty")
    try:
        results = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                          "was the run interrupted while writing it?") from None
    except (ValueError, RecursionError) as e:  # an integer of more digits than int() takes; nesting too deep
        raise ReportError(f"{path} cannot be read as results ({e})") from None
    return validate_results(results, path)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _methods(results: dict) -> list[str]:
    names = list(results["methods"])
    return sorted(names, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


def _error_keys(results: dict) -> list[str]:
    keys = set()
    for m in results["methods"].values():
        for it in m["iterations"] + [m["final"]]:
            keys.update(it.get("error_frequencies", {}))
    return [k for k in ERROR_ORDER if k in keys] + sorted(keys - set(ERROR_ORDER))


def _final(results: dict, name: str, split: str | None = None) -> dict:
    final = results["methods"][name]["final"]
    return final if split is None else final.get(split) or {}


def summary_table(results: dict, split: str | None = None) -> str:
    """Final pass@k (SUMMARY_KS and the run's ``pass_at_k``) and execution rate per method (``split``: the
    metrics under that key, e.g. test_families)."""
    ks = sorted(set(SUMMARY_KS) | set(results.get("meta", {}).get("pass_at_k", [])))
    lines = ["| Method | " + " | ".join(f"Pass@{k}" for k in ks) + " | Execution Rate |", "|---" * (len(ks) + 2) + "|"]
    for name in _methods(results):
        final = _final(results, name, split)
        cells = [_fmt(final.get(f"pass@{k}")) for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(final.get('execution_rate'))} |")
    return "\n".join(lines)


def last_turn(m: dict) -> int:
    """The highest turn with metrics in ``m`` (0: no per-turn metrics)."""
    turns = [_key_int(TURN_KEY, k) for k in m]
    return max((t for t in turns if t is not None), default=0)


def turn_table(results: dict, split: str | None = None) -> str | None:
    """Per method, the final policy's pass@1 and execution rate after turn 1 and after the last turn, and its
    repair rate; None without repair turns."""
    finals = {name: _final(results, name, split) for name in _methods(results)}
    t = max((last_turn(m) for m in finals.values()), default=0)
    if t < 2:
        return None
    lines = [f"| Method | Turn 1 Pass@1 | Turn {t} Pass@1 | Repair Rate | Turn 1 Execution Rate | "
             f"Turn {t} Execution Rate |", "|---|---|---|---|---|---|"]
    for name, m in finals.items():
        failures, se = m.get("num_turn_1_failures"), m.get("repair_rate_stderr")
        rate = (_fmt(m.get("repair_rate")) + (f" ± {se:.3f}" if se is not None else "")
                + (f" (of {failures})" if failures is not None else ""))
        lines.append(f"| {name} | {_fmt(m.get('turn_1/pass@1'))} | {_fmt(m.get(f'turn_{t}/pass@1'))} | {rate} | "
                     f"{_fmt(m.get('turn_1/execution_rate'))} | {_fmt(m.get(f'turn_{t}/execution_rate'))} |")
    return "\n".join(lines)


def turn_error_table(results: dict, method: str) -> str | None:
    """The final policy's error frequencies after turn 1 and after the last turn; None without repair turns."""
    m = results["methods"][method]["final"]
    t = last_turn(m)
    if t < 2:
        return None
    first, last = m.get("turn_1/error_frequencies", {}), m.get(f"turn_{t}/error_frequencies", {})
    lines = [f"| Error Type | Turn 1 | Turn {t} | Reduction |", "|---|---|---|---|"]
    for key in [k for k in ERROR_ORDER if k in first or k in last] + sorted((set(first) | set(last)) - set(ERROR_ORDER)):
        a, b = first.get(key, 0.0), last.get(key, 0.0)
        rel = f" ({(a - b) / a:+.0%})" if a > 0 else ""
        lines.append(f"| {key} | {a:.3f} | {b:.3f} | {a - b:+.3f}{rel} |")
    return "\n".join(lines)


def error_table(results: dict, method: str) -> str:
    m = results["methods"][method]
    initial = m["iterations"][0].get("error_frequencies", {})
    final = m["final"].get("error_frequencies", {})
    lines = ["| Error Type | Initial | Final | Reduction |", "|---|---|---|---|"]
    for key in _error_keys(results):
        a, b = initial.get(key, 0.0), final.get(key, 0.0)
        rel = f" ({(a - b) / a:+.0%})" if a > 0 else ""
        lines.append(f"| {key} | {a:.3f} | {b:.3f} | {a - b:+.3f}{rel} |")
    total_a, total_b = sum(initial.values()), sum(final.values())
    lines.append(f"| **All errors** | {total_a:.3f} | {total_b:.3f} | {total_a - total_b:+.3f} |")
    return "\n".join(lines)


def judge_section(results: dict) -> list[str]:
    """Per iteration with AI-judge feedback (an iteration's "judge" entry, `api.judge.summarize`): who decided
    the pairs, and the judge's agreement with execution where execution decides."""
    rows = []
    for name in _methods(results):
        for it in results["methods"][name]["iterations"]:
            j = it.get("judge")
            if j:
                agreement = "n/a" if j.get("judge_agreement") is None else (
                    f"{j['judge_agreement']:.3f} ({j.get('judge_agreement_pairs', 0)} pairs)")
                rows.append(f"| {name} | {it['iteration']} | {j.get('num_pairs', 0)} | "
                            f"{j.get('decided_by_execution', 0)} | {j.get('decided_by_judge', 0)} | "
                            f"{j.get('ties_broken_by_judge', 0)} | {j.get('judge_unparsed', 0)} | {agreement} |")
    if not rows:
        return []
    return ["## AI judge", "", "Compared program pairs per iteration; agreement is the judge's with execution on "
            "the pairs execution decides.", "", "| Method | Iteration | Pairs | By execution | By judge | "
            "Ties broken by judge | Unparsed answers | Agreement |", "|---|---|---|---|---|---|---|---|"] + rows + [""]


def api_usage_section(results: dict) -> list[str]:
    """Token usage of API models (results meta "api_usage": {role: ieta_jax.api.Usage dict})."""
    usage = results.get("meta", {}).get("api_usage") or {}
    if not usage:
        return []
    lines = ["## API usage", "", "| Role | Requests sent | Cache hits | Retries | Prompt tokens | Completion tokens |",
             "|---|---|---|---|---|---|"]
    for role, u in sorted(usage.items()):
        lines.append(f"| {role} | {u.get('requests', 0)} | {u.get('cache_hits', 0)} | {u.get('retries', 0)} | "
                     f"{u.get('prompt_tokens', 0)} | {u.get('completion_tokens', 0)} |")
    return lines + [""]


def _plots(results: dict, out_dir: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = _methods(results)
    ks = sorted({_key_int(PASS_KEY, k) for m in results["methods"].values() for k in m["final"]
                 if k.startswith("pass@")})
    files = {}

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files[name] = path

    last_iter = max(it["iteration"] for m in results["methods"].values() for it in m["iterations"])

    def curve(ax, name, ys_of):
        """One line per method; a method evaluated once (the baseline) is a dashed level across the x range."""
        its = results["methods"][name]["iterations"]
        xs, ys = [it["iteration"] for it in its], [ys_of(it) for it in its]
        if len(its) == 1 and last_iter > 0:
            ax.plot([xs[0], last_iter], [ys[0], ys[0]], linestyle="--", marker="o", markevery=[0], label=name)
        else:
            ax.plot(xs, ys, marker="o", label=name)

    # Pass rates per iteration (none in an older results.json that holds only execution rates).
    if ks:
        fig, axes = plt.subplots(1, len(ks), figsize=(4.5 * len(ks), 3.5), squeeze=False)
        for ax, k in zip(axes[0], ks):
            for name in methods:
                curve(ax, name, lambda it: it.get(f"pass@{k}"))
            ax.set_title(f"held-out pass@{k}")
            ax.set_xlabel("iteration")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend()
        save(fig, "pass_rates.png")

    # Execution rate per iteration.
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in methods:
        curve(ax, name, lambda it: it["execution_rate"])
    ax.set_title("held-out execution rate")
    ax.set_xlabel("iteration")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "execution_rates.png")

    # Error frequencies per iteration, one panel per method.
    keys = _error_keys(results)
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.5), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], methods):
        its = results["methods"][name]["iterations"]
        for key in keys:
            xs = [it["iteration"] for it in its]
            ys = [it.get("error_frequencies", {}).get(key, 0.0) for it in its]
            if len(its) == 1 and last_iter > 0:  # evaluated once (the baseline): a level across the x range
                ax.plot([xs[0], last_iter], [ys[0], ys[0]], linestyle="--", marker="o", markevery=[0], label=key)
            else:
                ax.plot(xs, ys, marker="o", label=key)
        ax.set_title(f"{name}: error frequencies")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    save(fig, "error_frequencies.png")

    # Training loss per method (policy loss, and the reward model's for RLAIF), steps across iterations.
    trained = [n for n in methods if any(it.get("train", {}).get("loss") for it in results["methods"][n]["iterations"])]
    if trained:
        fig, axes = plt.subplots(1, len(trained), figsize=(4.5 * len(trained), 3.5), squeeze=False)
        for ax, name in zip(axes[0], trained):
            for series in ("loss", "reward_model_loss"):
                ys = [y for it in results["methods"][name]["iterations"] for y in it.get("train", {}).get(series, [])]
                if ys:
                    ax.plot(range(1, len(ys) + 1), ys, label=series)
            ax.set_title(f"{name}: training loss")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save(fig, "training_loss.png")

    # Method comparison: final pass@k and execution rate side by side.
    metrics = [f"pass@{k}" for k in ks] + ["execution_rate"]
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) * max(1, len(methods)) / 2 + 3, 3.5))
    width = 0.8 / max(1, len(methods))
    for i, name in enumerate(methods):
        final = results["methods"][name]["final"]
        vals = [final.get(mk) or 0.0 for mk in metrics]
        bars = ax.bar([j + i * width for j in range(len(metrics))], vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title("final held-out metrics by method")
    ax.legend()
    save(fig, "method_comparison.png")
    return files


def write_report(results: dict | str, out_dir: str | None = None) -> str:
    """Write ``report.md`` and its PNGs into ``out_dir`` (default: beside results.json); returns its path.

    The results are validated first and every file is rendered into a temporary directory beside the
    outputs, then renamed into place once every target is known to take a rename: a bad results file, an
    output name taken by a directory or a failure while rendering leaves the existing report and plots untouched.
    """
    if isinstance(results, str):
        out_dir = out_dir or os.path.dirname(os.path.abspath(results))
        results = load_results(results)
    else:
        validate_results(results)
    if out_dir is None:
        raise ValueError("out_dir is required when results is a dict")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ReportError(f"--out_dir {out_dir} is not a directory")
    staging = None
    try:
        # A Ctrl-C as the staging directory is made waits until `staging` names it (then the finally removes it):
        # delivered inside mkdtemp, after its mkdir, it left the directory behind (CI, 1 run in many).
        with _sigint_held():
            try:
                os.makedirs(out_dir, exist_ok=True)
                staging = tempfile.mkdtemp(dir=out_dir, prefix=".report.")
            except OSError as e:
                raise ReportError(f"--out_dir {out_dir} cannot be created or written into ({e.strerror or e})") from None
        _render(results, staging)
        names = sorted(os.listdir(staging), key=lambda n: (n == "report.md", n))  # report.md last: it links plots
        _check_targets(out_dir, names)
        with _sigint_held():
            for name in names:
                os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    except OSError as e:
        raise ReportError(f"--out_dir {out_dir}: cannot write the report ({e.strerror or e})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(out_dir, "report.md")


def _check_targets(out_dir: str, names: list[str]) -> None:
    """Refuse before the first rename when an output name is taken by something a rename cannot or should not
    replace (a directory, a FIFO, a device): failing midway would leave new plots beside the old report.md."""
    for name in names:
        target = os.path.join(out_dir, name)
        if os.path.exists(target) and not os.path.islink(target) and not os.path.isfile(target):
            kind = "a directory" if os.path.isdir(target) else "not a regular file"
            raise ReportError(f"--out_dir {out_dir}: {name} there is {kind}; move it away or choose another "
                              "--out_dir")


@contextlib.contextmanager
def _sigint_held():
    """Hold Ctrl-C back while the outputs are renamed into place, then deliver it: an interrupt between two
    renames would leave new plots beside the old report.md. (Only the main thread can set a signal handler.)"""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)


def _render(results: dict, out_dir: str) -> str:
    plots = _plots(results, out_dir)
    meta: dict[str, Any] = results.get("meta", {})
    parts = ["# IETA experiment report", ""]
    if meta:
        desc = ", ".join(f"{k}={meta[k]}" for k in ("dataset", "model", "num_iterations", "num_eval_tasks",
                                                    "eval_num_samples", "num_train_tasks", "num_samples", "max_turns") if k in meta)
        parts += [f"Run: {desc}.", ""]
    parts += ["## Summary (held-out tasks, final policy of each method)", "", summary_table(results), "",
              "Pass@k for a k above the samples drawn per held-out task is n/a.", ""]
    turns = turn_table(results)
    if turns:
        parts += ["## Repair episodes (held-out tasks, final policy of each method)", "",
                  "Pass@1 after turn 1 and after the last turn (an episode's latest program, scored on the hidden "
                  "tests); repair rate: the fraction of episodes failing the hidden tests at turn 1 that pass them "
                  "after the last turn. The summary above is the last turn.", "", turns, ""]
    if any(_final(results, name, "test_families") for name in _methods(results)):
        parts += ["## Held-out families (final policy of each method)", "",
                  "Whole task families never seen in training (the table above: new parameters of seen families).",
                  "", summary_table(results, "test_families"), ""]
        family_turns = turn_table(results, "test_families")
        if family_turns:
            parts += [family_turns, ""]
    for name in _methods(results):
        parts += [f"## Errors: {name}", "", "Fraction of held-out samples per failure class, starting policy "
                  "(Initial) vs final policy (Final).", "", error_table(results, name), ""]
        per_turn = turn_error_table(results, name)
        if per_turn:
            parts += ["Final policy, per turn (the same episodes after turn 1 and after the last turn):", "",
                      per_turn, ""]
    time_rows = []
    for name in _methods(results):
        for it in results["methods"][name]["iterations"]:
            t = it.get("time_s")
            if t:
                time_rows.append(f"| {name} | {it['iteration']} | " + " | ".join(
                    f"{t.get(k, 0.0):.1f}" for k in ("sampling", "execution", "training", "evaluation")) + " |")
    if time_rows:
        parts += ["## Time per iteration (s)", "", "Iteration 1 of every method samples the shared starting policy "
                  "once; that sampling and execution time is listed under each method.", "", "| Method | Iteration | Sampling | Execution (not overlapped) | "
                  "Training | Evaluation |", "|---|---|---|---|---|---|"] + time_rows + [""]
    parts += judge_section(results) + api_usage_section(results)
    parts += ["## Plots", ""]
    for name in ("pass_rates.png", "execution_rates.png", "error_frequencies.png", "training_loss.png",
                 "method_comparison.png"):
        if name in plots:
            parts += [f"![{name[:-4].replace('_', ' ')}]({name})", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ieta_jax.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, help="path to results.json")
    p.add_argument("--out_dir", default=None, help="where report.md and PNGs go (default: beside results.json)")
    args = p.parse_args(argv)
    try:
        print(write_report(args.results, args.out_dir))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the outputs are the old set or the whole new one (_sigint_held), never a mix
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    from ieta_jax import cli

    cli.exit(main())
