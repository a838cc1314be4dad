"""ieta_jax.workdir: atomic writes never leave a half-written or truncated file; cached stages compute once."""
import errno
import json
import os
import stat
import threading

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


def _char_device(path, minor):
    """A clone of /dev/null (minor 3) or /dev/full (minor 7) at ``path`` (mknod needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))


def test_a_device_is_written_into_never_replaced(tmp_path):
    null = str(tmp_path / "null")
    _char_device(null, 3)
    workdir.write_json(null, {"a": 1})
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.listdir(tmp_path) == ["null"]


def test_a_write_error_on_a_device_is_an_oserror_and_keeps_the_device(tmp_path):
    full = str(tmp_path / "full")
    _char_device(full, 7)
    with pytest.raises(OSError) as e:
        workdir.write_json(full, {"a": 1})
    assert e.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat(full).st_mode) and os.listdir(tmp_path) == ["full"]


def test_a_fifo_is_written_into_never_replaced(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    workdir.write_jsonl(fifo, [{"x": 1}, {"x": 2}])
    reader.join(timeout=10)
    assert got == ['{"x": 1}\n{"x": 2}\n']
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["fifo"]


def test_jsonl_round_trip_with_numpy_values(tmp_path):
    rows = [{"x": np.int64(3), "y": np.float32(0.5), "z": np.arange(2)}, {"x": 4}]
    workdir.write_jsonl(str(tmp_path / "d" / "rows.jsonl"), rows)
    assert workdir.read_jsonl(str(tmp_path / "d" / "rows.jsonl")) == [{"x": 3, "y": 0.5, "z": [0, 1]}, {"x": 4}]
    assert workdir.read_json(str(tmp_path / "missing.json")) is None


@pytest.mark.parametrize("content", [b'{"a": 1, "b', b"\xff\xfe{}", b"[" * 100000],
                         ids=["truncated", "not_utf8", "too_deep"])
def test_a_corrupt_file_is_named(tmp_path, content):
    for name, read in [("x.json", workdir.read_json), ("x.jsonl", workdir.read_jsonl)]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(workdir.CorruptFileError, match=f"^{path} is corrupt"):
            read(str(path))


def test_a_corrupt_stage_output_says_to_delete_it_and_is_not_overwritten(tmp_path):
    wd = workdir.Workdir(str(tmp_path))
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "eval.json").write_text('{"pass@1": 0.')
    (tmp_path / "stage" / "rows.jsonl").write_text('{"x": 1}\n{"x"\n')
    for read in (lambda: wd.cached_json("stage/eval.json", lambda: {"recomputed": True}),
                 lambda: wd.read_jsonl("stage/rows.jsonl")):
        with pytest.raises(workdir.CorruptFileError) as e:
            read()
        assert str(e.value).endswith("; delete it to recompute that stage") and str(tmp_path / "stage") in str(e.value)
    assert (tmp_path / "stage" / "eval.json").read_text() == '{"pass@1": 0.'


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


@pytest.mark.parametrize("choice", ["workdir", "none", "shared"])
def test_compilation_cache_lasts_as_long_as_the_run(tmp_path, choice):
    """config.compilation_cache: executables compiled during the run land in the chosen directory (the
    workdir's by default; none: nowhere), and the process's previous setting is back afterwards."""
    import jax
    import ml_collections

    from ieta_jax.experiment.start import compilation_cache

    config = ml_collections.ConfigDict({"compilation_cache": str(tmp_path / "shared") if choice == "shared"
                                        else choice})
    want = {"workdir": tmp_path / "run" / "compilation_cache", "none": None, "shared": tmp_path / "shared"}[choice]
    before = jax.config.jax_compilation_cache_dir
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # cache even this tiny function
    try:
        with compilation_cache(config, str(tmp_path / "run")) as path:
            assert path == (None if want is None else str(want))
            assert jax.config.jax_compilation_cache_dir == path
            np.testing.assert_allclose(jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(7.0)), np.arange(7.0) * 3 + 1)
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    assert jax.config.jax_compilation_cache_dir == before
    if want is None:
        assert not (tmp_path / "run").exists()
    else:
        assert os.listdir(want)  # the executable was written there
