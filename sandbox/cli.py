"""`python -m sandbox run --in requests.jsonl --out results.jsonl [...]`

Reads one request per line, runs the valid ones, writes one result line per valid request (in input
order). Invalid lines (bad JSON, unknown test kind, missing or mistyped fields, no tests) are reported
on stderr as `<file>:<line>: <reason>` and the exit code is 2; the valid lines still run. Bad flags
(`--workers 0`, `--timeout_s -1`, a missing `--in`, an `--out` in a missing directory) are one
`error:` line and exit 2 before anything starts or is written. `--out` is written to a temporary file
next to it and renamed at the end, so it is never left half-written or truncated (what is not a regular file,
/dev/null or a FIFO, is written into instead; a write error is one `error:` line, exit 2). Ctrl-C prints
`interrupted` and exits 130, `--out` as it was.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

from .executor import Executor
from .gvisor import PLATFORMS
from .schema import MAX_MEMORY_MB, MAX_TIMEOUT_S, RequestError, parse_request


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
    r.add_argument("--platform", choices=PLATFORMS, default=None,
                   help="gvisor/ray: runsc's platform (default ptrace, which works everywhere; kvm needs /dev/kvm)")
    r.add_argument("--timeout_s", type=float, default=10.0, help="default wall-clock limit per request")
    r.add_argument("--memory_mb", type=int, default=512, help="default memory limit per request")
    r.add_argument("--trace", action="store_true", help="capture execution traces by default")
    r.add_argument("--order", choices=["random", "fifo"], default="random",
                   help="order in which waiting requests start: random (default; neighbours in one sandbox share "
                        "its kernel's counters, see the README) or fifo (as listed, e.g. to test one program after "
                        "another)")
    r.add_argument("--no_progress", action="store_true", help="disable the progress bar")
    return p


def read_requests(lines, name: str, *, timeout_s: float, memory_mb: int, trace: bool):
    """Returns (valid requests, list of 'name:line: reason' errors). `lines`: str, or bytes decoded here line by
    line (a line that is not UTF-8 is that line's error, not the file's; a BOM on the first line is skipped)."""
    valid, errors, seen = [], [], set()
    for n, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                errors.append(f"{name}:{n}: not UTF-8 text: {e}")
                continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            errors.append(f"{name}:{n}: invalid JSON: {str(e)[:200] or type(e).__name__}")
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


def check_args(args) -> str | None:
    """The first problem with the flags (one line), or None."""
    if args.backend != "ray":
        for flag in ("ray_address", "ray_node_resource"):
            if getattr(args, flag) is not None:
                return f"--{flag} only applies to --backend ray (got --backend {args.backend})"
    if args.platform is not None and args.backend == "process":
        return "--platform is runsc's: it applies to --backend gvisor or ray (the process backend runs no runsc)"
    if args.workers is not None and args.workers < 1:
        return f"--workers must be >= 1 (omit it for the backend default), got {args.workers}"
    if not 0 < args.timeout_s <= MAX_TIMEOUT_S:
        return f"--timeout_s must be in (0, {MAX_TIMEOUT_S}], got {args.timeout_s}"
    if not 32 <= args.memory_mb <= MAX_MEMORY_MB:
        return f"--memory_mb must be in [32, {MAX_MEMORY_MB}], got {args.memory_mb}"
    if args.inp != "-" and not os.path.isfile(args.inp):
        if os.path.isdir(args.inp):
            return f"--in {args.inp} is a directory"
        if os.path.exists(args.inp):
            return f"--in {args.inp} is not a regular file (use --in - to read a pipe)"
        return f"--in {args.inp}: no such file"
    if not args.out:
        return "--out must not be empty (use --out - for standard output)"
    if args.out != "-":
        parent = os.path.dirname(os.path.abspath(args.out))
        if os.path.isdir(args.out):
            return f"--out {args.out} is a directory"
        if not os.path.isdir(parent):
            return f"--out {args.out}: directory {parent} does not exist"
        if not os.access(parent, os.W_OK):
            return f"--out {args.out}: directory {parent} is not writable"
    return None


def _open_out(path: str):
    """(file to write the results to, its temporary name or None): `path` itself for stdout ('-') and for what is not
    a regular file (/dev/null, a FIFO: written, never replaced); otherwise a temporary file next to it, renamed over
    it at the end, so it is never left half-written."""
    if path == "-":
        return sys.stdout, None
    if os.path.exists(path) and not os.path.isfile(path):
        return open(path, "w", encoding="utf-8"), None
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
    return os.fdopen(fd, "w", encoding="utf-8"), tmp


def run(args) -> int:
    problem = check_args(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.inp == "-" and sys.stdin is None:
        print("error: --in -: standard input is closed", file=sys.stderr)
        return 2
    try:
        src = sys.stdin.buffer if args.inp == "-" else open(args.inp, "rb")
        with src:
            requests, errors = read_requests(src, "<stdin>" if args.inp == "-" else args.inp,
                                             timeout_s=args.timeout_s, memory_mb=args.memory_mb, trace=args.trace)
    except OSError as e:
        print(f"error: --in {args.inp}: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(e, file=sys.stderr)
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional for the sandbox
        tqdm = None
    opts, workers = {}, args.workers
    if args.backend == "ray":
        opts = {"ray_address": args.ray_address, "node_resource": args.ray_node_resource,
                "workers_per_actor": args.workers}
        workers = None
    if args.platform:
        opts["platform"] = args.platform
    try:
        out, tmp = _open_out(args.out)
    except OSError as e:
        print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    counts = {}
    try:
        try:
            ex = Executor(backend=args.backend, workers=workers, timeout_s=args.timeout_s,
                          memory_mb=args.memory_mb, trace=args.trace, order=args.order, **opts)
        except Exception as e:  # e.g. runsc missing or unable to start: say so in one line
            print(f"error: the {args.backend} sandbox could not start: {e}", file=sys.stderr)
            return 2
        with ex:
            futs = [ex.submit(r) for r in requests]
            it = futs if tqdm is None or args.no_progress else tqdm(futs, desc="sandbox", unit="prog", file=sys.stderr)
            for f in it:
                res = f.result()
                counts[res.status] = counts.get(res.status, 0) + 1
                out.write(json.dumps(res.to_dict()) + "\n")
                out.flush()
        if tmp is not None:
            out.close()
            os.replace(tmp, args.out)
            tmp = None
        elif out is not sys.stdout:
            out.close()
    except BrokenPipeError:  # --out - into `head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # writing --out failed: a full disk, /dev/full (the pool's own failures are results)
        print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(OSError):  # a write that failed stays buffered; it fails again on close
                out.close()
        if tmp is not None:
            os.unlink(tmp)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"{len(requests)} requests run ({summary or 'none'}); {len(errors)} invalid lines", file=sys.stderr)
    return 2 if errors else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "run":
        try:
            return run(args)
        except KeyboardInterrupt:  # Ctrl-C: --out is as it was (renamed into place only at the end)
            print("interrupted", file=sys.stderr)
            return 130
    return 1
