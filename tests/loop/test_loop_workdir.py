"""ieta_jax.workdir: atomic writes never leave a half-written or truncated file; cached stages compute once."""
import json
import os

import numpy as np
import pytest

from ieta_jax import workdir


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    workdir.write_json(str(path), {"a": 1})

    def half_then_crash(f):
        f.write('{"a": 2, "b"')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        workdir.atomic_write(str(path), half_then_crash)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["out.json"]


def test_jsonl_round_trip_with_numpy_values(tmp_path):
    rows = [{"x": np.int64(3), "y": np.float32(0.5), "z": np.arange(2)}, {"x": 4}]
    workdir.write_jsonl(str(tmp_path / "d" / "rows.jsonl"), rows)
    assert workdir.read_jsonl(str(tmp_path / "d" / "rows.jsonl")) == [{"x": 3, "y": 0.5, "z": [0, 1]}, {"x": 4}]
    assert workdir.read_json(str(tmp_path / "missing.json")) is None


def test_cached_json_computes_once(tmp_path):
    wd = workdir.Workdir(str(tmp_path))
    calls = []
    compute = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    assert wd.cached_json("stage/eval.json", compute) == {"value": 1}
    assert wd.cached_json("stage/eval.json", compute) == {"value": 1}
    assert calls == [1] and json.loads((tmp_path / "stage" / "eval.json").read_text()) == {"value": 1}


def test_replace_dir_swaps_a_finished_directory_in(tmp_path):
    out, tmp = tmp_path / "policy", tmp_path / "policy.tmp"
    out.mkdir()
    (out / "old").write_text("old")
    tmp.mkdir()
    (tmp / "new").write_text("new")
    workdir.replace_dir(str(tmp), str(out))
    assert os.listdir(out) == ["new"] and not tmp.exists()
