"""`python -m sandbox run --in requests.jsonl --out results.jsonl [...]`

Reads one request per line, runs the valid ones, writes one result line per valid request (in input
order). Invalid lines (bad JSON, unknown test kind, missing or mistyped fields) are reported on
stderr as `<file>:<line>: <reason>` and the exit code is 2; the valid lines still run.
"""
from __future__ import annotations

import argparse
import json
import sys

from .executor import Executor
from .schema import RequestError, parse_request


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a JSONL file of requests")
    r.add_argument("--in", dest="inp", required=True, help="requests JSONL ('-' for stdin)")
    r.add_argument("--out", required=True, help="results JSONL ('-' for stdout)")
    r.add_argument("--backend", choices=["gvisor", "process", "ray"], default="gvisor",
                   help="gvisor (isolated, default), process (UNISOLATED, for machines without runsc) or "
                        "ray (gVisor pools in Ray actors across a cluster)")
    r.add_argument("--workers", type=int, default=None,
                   help="parallel sandboxes (default: CPU count); for --backend ray: sandboxes per actor")
    r.add_argument("--ray_address", default=None,
                   help="backend=ray: 'auto' (running cluster on this node), host:port or ray://host:10001; "
                        "default: start a local Ray on this machine")
    r.add_argument("--ray_node_resource", default=None,
                   help="backend=ray: only nodes with this custom resource host sandbox actors")
    r.add_argument("--timeout_s", type=float, default=10.0, help="default wall-clock limit per request")
    r.add_argument("--memory_mb", type=int, default=512, help="default memory limit per request")
    r.add_argument("--trace", action="store_true", help="capture execution traces by default")
    r.add_argument("--no_progress", action="store_true", help="disable the progress bar")
    return p


def read_requests(lines, name: str, *, timeout_s: float, memory_mb: int, trace: bool):
    """Returns (valid requests, list of 'name:line: reason' errors)."""
    valid, errors, seen = [], [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            errors.append(f"{name}:{n}: invalid JSON: {e}")
            continue
        try:
            req = parse_request(obj, timeout_s=timeout_s, memory_mb=memory_mb, trace=trace)
        except RequestError as e:
            errors.append(f"{name}:{n}: {e}")
            continue
        if req["id"] in seen:
            errors.append(f"{name}:{n}: duplicate id {req['id']!r}")
            continue
        seen.add(req["id"])
        valid.append(req)
    return valid, errors


def run(args) -> int:
    if args.backend != "ray":
        for flag in ("ray_address", "ray_node_resource"):
            if getattr(args, flag) is not None:
                raise SystemExit(f"error: --{flag} only applies to --backend ray (got --backend {args.backend})")
    src = sys.stdin if args.inp == "-" else open(args.inp, encoding="utf-8")
    with src:
        requests, errors = read_requests(src, "<stdin>" if args.inp == "-" else args.inp,
                                         timeout_s=args.timeout_s, memory_mb=args.memory_mb, trace=args.trace)
    for e in errors:
        print(e, file=sys.stderr)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional for the sandbox
        tqdm = None
    opts, workers = {}, args.workers
    if args.backend == "ray":
        opts = {"ray_address": args.ray_address, "node_resource": args.ray_node_resource,
                "workers_per_actor": args.workers}
        workers = None
    with Executor(backend=args.backend, workers=workers, timeout_s=args.timeout_s,
                  memory_mb=args.memory_mb, trace=args.trace, **opts) as ex:
        futs = [ex.submit(r) for r in requests]
        it = futs if tqdm is None or args.no_progress else tqdm(futs, desc="sandbox", unit="prog", file=sys.stderr)
        counts = {}
        for f in it:
            res = f.result()
            counts[res.status] = counts.get(res.status, 0) + 1
            out.write(json.dumps(res.to_dict()) + "\n")
            out.flush()
    if out is not sys.stdout:
        out.close()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"{len(requests)} requests run ({summary or 'none'}); {len(errors)} invalid lines", file=sys.stderr)
    return 2 if errors else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "run":
        return run(args)
    return 1
