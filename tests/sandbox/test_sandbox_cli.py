"""The JSONL CLI: one result line per valid request, bad lines reported with their line number."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_runs_valid_lines_and_names_bad_ones(tmp_path):
    good = {"id": "a", "solution": "def f(x):\n    return x * 2\n",
            "test": {"kind": "call", "fn_name": "f", "cases": [{"args": [2], "expected": 4}, {"args": [3], "expected": 7}]}}
    lines = [json.dumps(good), "{not json", json.dumps({"id": "b", "solution": "x", "test": {"kind": "mystery"}}),
             "", json.dumps({"id": "c", "test": {"kind": "stdio", "cases": []}}),
             json.dumps({"id": "d", "solution": "print(input()[::-1])",
                         "test": {"kind": "stdio", "cases": [{"input": "abc\n", "output": "cba\n"}]}})]
    inp, out = tmp_path / "req.jsonl", tmp_path / "res.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    p = subprocess.run([sys.executable, "-m", "sandbox", "run", "--in", str(inp), "--out", str(out),
                        "--backend", "process", "--workers", "1", "--no_progress", "--trace"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"{inp}:2: invalid JSON" in p.stderr
    assert f"{inp}:3: request 'b': unknown test kind 'mystery'" in p.stderr
    assert f"{inp}:5: request 'c': missing field 'solution'" in p.stderr
    assert "UNISOLATED" in p.stderr
    res = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in res] == ["a", "d"]
    assert set(res[0]) == {"id", "status", "error_type", "error_message", "error_line", "tests_passed",
                           "tests_total", "duration_s", "stdout", "stderr", "isolation", "trace"}
    assert (res[0]["status"], res[0]["tests_passed"], res[0]["tests_total"]) == ("failed", 1, 2)
    assert res[1]["status"] == "passed" and res[1]["isolation"] == "process"
    assert res[1]["trace"]["coverage"] == {"1": 1}


GOOD_LINE = json.dumps({"id": "a", "solution": "def f(x):\n    return x\n",
                        "test": {"kind": "asserts", "asserts": ["assert f(1) == 1"]}})


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sandbox", "run", *args, "--no_progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("flags, message", [
    (["--workers", "-1"], "error: --workers must be >= 1 (omit it for the backend default), got -1"),
    (["--workers", "0"], "error: --workers must be >= 1 (omit it for the backend default), got 0"),
    (["--timeout_s", "-1"], "error: --timeout_s must be in (0, 600.0], got -1.0"),
    (["--memory_mb", "10"], "error: --memory_mb must be in [32, 16384], got 10"),
    (["--platform", "kvm"], "error: --platform is runsc's: it applies to --backend gvisor or ray (the process backend "
                            "runs no runsc)"),
])
def test_bad_flags_one_line_exit_2_out_untouched(tmp_path, flags, message):
    inp, out = tmp_path / "req.jsonl", tmp_path / "res.jsonl"
    inp.write_text(GOOD_LINE + "\n" + GOOD_LINE.replace('"a"', '"b"') + "\n")
    out.write_text("previous results\n")
    p = _cli("--in", str(inp), "--out", str(out), "--backend", "process", *flags)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [message]     # once, before any request line or pool start
    assert "UNISOLATED" not in p.stderr                    # the pool never started
    assert out.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["req.jsonl", "res.jsonl"]


def test_missing_in_and_out_directory(tmp_path):
    inp = tmp_path / "req.jsonl"
    inp.write_text(GOOD_LINE + "\n")
    p = _cli("--in", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "res.jsonl"), "--backend", "process")
    assert (p.returncode, p.stderr.strip().splitlines()) == (2, [f"error: --in {tmp_path / 'nope.jsonl'}: no such file"])
    p = _cli("--in", str(inp), "--out", str(tmp_path / "missing" / "res.jsonl"), "--backend", "process")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"error: --out {tmp_path / 'missing' / 'res.jsonl'}: "
                                             f"directory {tmp_path / 'missing'} does not exist"]
    assert sorted(os.listdir(tmp_path)) == ["req.jsonl"]


def test_paths_that_cannot_be_used_are_refused_before_anything_runs(tmp_path):
    inp, fifo = tmp_path / "req.jsonl", tmp_path / "in.fifo"
    inp.write_text(GOOD_LINE + "\n")
    os.mkfifo(fifo)
    for flags, message in [
        (["--in", str(inp), "--out", ""], "error: --out must not be empty (use --out - for standard output)"),
        (["--in", str(tmp_path), "--out", str(tmp_path / "res.jsonl")], f"error: --in {tmp_path} is a directory"),
        (["--in", str(fifo), "--out", str(tmp_path / "res.jsonl")],
         f"error: --in {fifo} is not a regular file (use --in - to read a pipe)"),
    ]:
        p = _cli(*flags, "--backend", "process")
        assert (p.returncode, p.stderr.strip().splitlines()) == (2, [message])
    assert sorted(os.listdir(tmp_path)) == ["in.fifo", "req.jsonl"]


def test_a_write_error_on_out_is_one_line(tmp_path):
    """A full device (ENOSPC) is written into, not replaced, and its error is one line."""
    import stat

    inp, full = tmp_path / "req.jsonl", tmp_path / "full"
    inp.write_text(GOOD_LINE + "\n")
    try:  # a /dev/full of our own where we may (as root a bug replacing it would hit the real one)
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        full = "/dev/full"
    p = _cli("--in", str(inp), "--out", str(full), "--backend", "process")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"error: --out {full}: No space left on device"
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_out_is_replaced_atomically(tmp_path):
    # The results go to a temporary file renamed over --out at the end: a run killed midway leaves the
    # previous --out intact and no temporary file behind... and a finished run replaces it whole.
    inp, out = tmp_path / "req.jsonl", tmp_path / "res.jsonl"
    slow = json.dumps({"id": "slow", "solution": "import time\ntime.sleep(30)\n",
                       "test": {"kind": "asserts", "asserts": ["assert True"]}})
    inp.write_text(GOOD_LINE + "\n" + slow + "\n")
    out.write_text("previous results\n")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "run", "--in", str(inp), "--out", str(out),
                             "--backend", "process", "--workers", "1", "--order", "fifo", "--no_progress",
                             "--timeout_s", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # SIGINT as a terminal's Ctrl-C delivers it: a child inherits an ignored SIGINT (a
                            # library in this pytest process may have set it so), and Python then keeps it ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(n.startswith(".results-") and os.path.getsize(tmp_path / n) > 0 for n in os.listdir(tmp_path)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)   # wait for a state: the first result line is in the temporary file
    assert out.read_text() == "previous results\n"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130 and proc.stderr.read().decode().strip().splitlines()[-1] == "interrupted"
    assert out.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["req.jsonl", "res.jsonl"]
    inp.write_text(GOOD_LINE + "\n")
    p = _cli("--in", str(inp), "--out", str(out), "--backend", "process")
    assert p.returncode == 0, p.stderr
    assert [json.loads(x)["status"] for x in out.read_text().splitlines()] == ["passed"]
    assert sorted(os.listdir(tmp_path)) == ["req.jsonl", "res.jsonl"]


def test_cli_reads_line_by_line_and_writes_into_what_out_names(tmp_path):
    # a byte that is not UTF-8 spoils its own line only; a line nested past the parser's depth is that line's error;
    # --out naming a FIFO (or /dev/null) is written into, never renamed over (as root that replaced the device)
    good = json.dumps({"id": "a", "solution": "print(1)", "test": {"kind": "stdio", "cases": [{"input": "", "output": "1\n"}]}})
    inp = tmp_path / "req.jsonl"
    inp.write_bytes(good.encode() + b"\n\xff\xfe bad\n" + b"[" * 100_000 + b"\n")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    chunks = []
    import threading
    reader = threading.Thread(target=lambda: chunks.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    p = subprocess.run([sys.executable, "-m", "sandbox", "run", "--in", str(inp), "--out", str(fifo),
                        "--backend", "process", "--workers", "1", "--no_progress"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    reader.join(timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"{inp}:2: not UTF-8 text" in p.stderr and f"{inp}:3: invalid JSON" in p.stderr
    assert stat_is_fifo(fifo) and chunks, "the FIFO was replaced by a file, or never written"
    assert [json.loads(x)["status"] for x in chunks[0].decode().splitlines()] == ["passed"]


def stat_is_fifo(path) -> bool:
    import stat
    return stat.S_ISFIFO(os.stat(path).st_mode)


def test_cli_closed_stdin_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sandbox", "run", "--in", "-", "--out", str(tmp_path / "o.jsonl"),
                        "--backend", "process", "--no_progress"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == "error: --in -: standard input is closed"
