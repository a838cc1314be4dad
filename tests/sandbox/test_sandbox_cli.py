"""The JSONL CLI: one result line per valid request, bad lines reported with their line number."""
import json
import subprocess
import sys

import os

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
