"""Loaders on fixtures in each dataset's real format, with sandbox verdicts on their references."""
import json
import logging

import pytest

from ieta_jax import data
from ieta_jax.data import apps, humaneval, mbpp


def test_humaneval_from_package():
    tasks = data.load_tasks("humaneval")
    assert len(tasks) == 164 and len({t.task_id for t in tasks}) == 164
    t = tasks[0]
    assert t.task_id == "HumanEval/0" and t.entry_point == "has_close_elements"
    assert t.test["kind"] == "humaneval" and "def check(candidate)" in t.test["test"]
    assert t.prompt.startswith("from typing import List") and t.reference.startswith("    for idx")
    assert [x.task_id for x in data.load_tasks("openai/openai_humaneval", limit=3)] == \
        ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert data.load_tasks("humaneval", limit=0) == [] and data.load_tasks("synthetic", limit=0) == []
    with pytest.raises(ValueError, match="only the 'test' split"):
        data.load_tasks("humaneval", split="train")


def test_humaneval_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="could not load 'openai/openai_humaneval'.*local"):
        humaneval.load(source="hub")


def test_humaneval_local_file_and_bad_row(tmp_path):
    good = {"task_id": "X/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
            "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "task_id": "X/1", "entry_point": 3}) + "\n")
    with pytest.raises(data.RowError, match=r"he.jsonl:2: field 'entry_point' must be str"):
        data.load_tasks(str(path))
    tasks = data.load_tasks(str(path), on_error="skip")
    assert [t.task_id for t in tasks] == ["X/0"]


def test_mbpp_full_real_format(fixtures_dir):
    tasks = data.load_tasks(str(fixtures_dir / "mbpp_full.jsonl"))
    assert [t.task_id for t in tasks] == ["mbpp/11", "mbpp/12", "mbpp/602"]
    t = tasks[0]
    assert t.prompt == ('"""\nWrite a function to find the sum of the squares of the first n natural numbers.\n'
                        'assert square_sum(2) == 5\n"""\n')
    assert "\r" not in t.reference and "\t" in t.reference       # CRLF normalised, tabs kept
    assert t.entry_point == "square_sum"
    assert t.test == {"kind": "asserts", "setup": "",
                      "asserts": ["assert square_sum(2) == 5", "assert square_sum(3) == 14",
                                  "assert square_sum(4) == 30"]}
    assert tasks[2].test["setup"] == "ITEMS = [('a', 3), ('b', 4)]" and tasks[2].metadata["split"] == "train"
    assert [t.task_id for t in data.load_tasks(str(fixtures_dir / "mbpp_full.jsonl"), split="test")] == \
        ["mbpp/11", "mbpp/12"]
    assert "\nassert " in t.stop          # a completion is a whole function: stop at the tests


def test_mbpp_sanitized_format(fixtures_dir):
    tasks = mbpp.load(path=fixtures_dir / "mbpp_sanitized.json")
    assert [t.metadata["config"] for t in tasks] == ["sanitized", "sanitized"]
    assert tasks[1].test["setup"] == "import math" and tasks[1].entry_point == "hypotenuse"
    assert tasks[1].prompt.endswith('assert math.isclose(hypotenuse(3, 4), 5.0)\n"""\n')


def test_mbpp_malformed_row_is_named(tmp_path, fixtures_dir):
    lines = (fixtures_dir / "mbpp_full.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["test_list"] = []
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), "{not json", lines[2]]) + "\n")
    with pytest.raises(data.RowError, match=r"mbpp.jsonl:2 \(task_id 12\): field 'test_list' must be a non-empty"):
        data.load_tasks(str(path))
    with pytest.raises(data.RowError, match=r"mbpp.jsonl:3: invalid JSON"):
        data.load_tasks(str(path), on_error="skip")


def test_apps_call_and_stdio(fixtures_dir, caplog):
    with caplog.at_level(logging.WARNING):
        tasks = data.load_tasks(str(fixtures_dir / "apps.jsonl"))
    assert "skipped 1 row(s) without tests" in caplog.text      # problem 4004 has no input_output
    assert [t.task_id for t in tasks] == ["apps/4001", "apps/4002", "apps/4003"]
    add, rev, stdio = tasks
    assert add.test == {"kind": "call", "fn_name": "add", "cases": [
        {"args": [1, 2], "expected": 3}, {"args": [10, -3], "expected": 7}, {"args": [0, 0], "expected": 0}]}
    assert rev.test["cases"][0] == {"args": [[1, 2, 3]], "expected": [3, 2, 1]}
    assert stdio.test == {"kind": "stdio", "cases": [{"input": "2\n3\n4\n", "output": "7\n4\n"},
                                                    {"input": "3\n1\n9\n2\n", "output": "12\n9\n"},
                                                    {"input": "1\n-5\n", "output": "-5\n-5\n"}]}
    assert add.prompt == ("\nQUESTION:\nGiven two integers, return their sum.\ndef add(a, b):\n\t\n"
                          "\nUse Call-Based format\nANSWER:\n")
    assert stdio.prompt.endswith("\nUse Standard Input format\nANSWER:\n")
    assert data.build_program(stdio, "print(1)\n") == "print(1)\n"      # the prompt is prose, not code
    assert stdio.entry_point is None and add.entry_point == "add"
    intro = data.load_tasks(str(fixtures_dir / "apps.jsonl"), difficulty="introductory")
    assert [t.task_id for t in intro] == ["apps/4001", "apps/4003"]
    with pytest.raises(ValueError, match="unknown APPS difficulty"):
        apps.load(path=fixtures_dir / "apps.jsonl", difficulty="easy")


def test_apps_parquet_and_malformed(tmp_path, fixtures_dir):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rows = [json.loads(l) for l in (fixtures_dir / "apps.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "apps.parquet")
    tasks = data.load_tasks(str(tmp_path / "apps.parquet"))
    assert [t.to_dict() for t in tasks] == [t.to_dict() for t in data.load_tasks(str(fixtures_dir / "apps.jsonl"))]
    bad = dict(rows[0], input_output='{"inputs": [[1, 2]], "outputs": ')
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(rows[2]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(data.RowError, match=r"bad.jsonl:2 \(problem_id 4001\): field 'input_output' is not valid"):
        data.load_tasks(str(path))


def test_unknown_dataset_and_format(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data.load_tasks("nope")
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(data.RowError, match="unrecognised dataset format"):
        data.load_tasks(str(path))


def test_saved_tasks_round_trip(tmp_path):
    tasks = data.load_tasks("synthetic", limit=6)
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks))
    assert data.load_tasks(str(path)) == tasks
    assert [t.task_id for t in data.load_tasks(str(path), split="heldout")] == \
        [t.task_id for t in tasks if t.metadata["split"] == "heldout"]


def test_fixture_references_pass_in_the_sandbox(executor, fixtures_dir):
    tasks = (data.load_tasks(str(fixtures_dir / "mbpp_full.jsonl"))
             + data.load_tasks(str(fixtures_dir / "mbpp_sanitized.json"))
             + data.load_tasks(str(fixtures_dir / "apps.jsonl")))
    wrong = {"mbpp/11": "def square_sum(n):\n\treturn n * n\n",            # passes 0/3
             "apps/4001": "def add(a, b):\n    return a + b if a else 1\n",   # passes 2/3 (0+0 -> 1)
             "apps/4002": "class Solution:\n    def reverseList(self, xs):\n        return xs\n",   # [] and [5] pass
             "apps/4003": "n = int(input())\nxs = [int(input()) for _ in range(n)]\nprint(sum(xs))\nprint(min(xs))\n"}
    requests = [data.to_request(t, t.reference, f"{t.task_id}/ref/{i}") for i, t in enumerate(tasks)]
    by_id = {t.task_id: t for t in tasks}
    requests += [data.to_request(by_id[tid], c, f"{tid}/wrong") for tid, c in wrong.items()]
    results = {r.id: r for r in executor.run(requests)}
    for i, t in enumerate(tasks):
        r = results[f"{t.task_id}/ref/{i}"]
        assert r.status == "passed" and r.tests_passed == r.tests_total == len(
            t.test.get("asserts") or t.test.get("cases")), (t.task_id, r)
    partial = {tid: (results[f"{tid}/wrong"].status, results[f"{tid}/wrong"].tests_passed) for tid in wrong}
    assert partial == {"mbpp/11": ("failed", 0), "apps/4001": ("failed", 2), "apps/4002": ("failed", 2),
                       "apps/4003": ("failed", 1)}


def test_data_feedback_evaluation_do_not_import_jax():
    import subprocess
    import sys
    code = ("import sys, ieta_jax.data, ieta_jax.feedback, ieta_jax.evaluation, ieta_jax.evaluate;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'torch'));"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert proc.returncode == 0, proc.stderr[-2000:]
