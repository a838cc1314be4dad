"""`python -m ieta_jax.report`: its tables hold the numbers of results.json; bad results files are refused whole."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("pass_rates.png", "execution_rates.png", "error_frequencies.png", "training_loss.png",
         "method_comparison.png")


def _iteration(k, p1, p10, exec_rate, errors, loss=None):
    it = {"iteration": k, "pass@1": p1, "pass@10": p10, "execution_rate": exec_rate, "error_frequencies": errors}
    if loss is not None:
        it["train"] = {"loss": loss}
        it["time_s"] = {"sampling": 1.25 * k, "execution": 0.5, "training": 2.0, "evaluation": 0.75}
    return it


def _results():
    base = _iteration(0, 0.25, 0.5, 0.375, {"IndexError": 0.25, "TypeError": 0.125, "Other": 0.25})
    dpo = [base, _iteration(1, 0.3125, 0.625, 0.5, {"IndexError": 0.125, "TypeError": 0.125, "Other": 0.25},
                            loss=[0.69, 0.6]),
           _iteration(2, 0.4375, 0.75, 0.625, {"IndexError": 0.0625, "TypeError": 0.0625, "Other": 0.25},
                      loss=[0.55, 0.5])]
    view = lambda it: {k: v for k, v in it.items() if k not in ("iteration", "train", "time_s")}  # noqa: E731
    return {"meta": {"dataset": "synthetic", "model": "tiny", "num_iterations": 2},
            "methods": {"dpo": {"iterations": dpo, "final": view(dpo[-1])},
                        "baseline": {"iterations": [base], "final": view(base)}}}


def _table(md, header):
    """The rows (lists of cells) of the markdown table whose header line starts with `header`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _report(*args):
    return subprocess.run([sys.executable, "-m", "ieta_jax.report", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_report_cli_tables_hold_the_numbers_of_results_json(tmp_path):
    results = _results()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    proc = _report("--results", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    # Summary: methods in baseline, dpo order; pass@100 was not measured (n/a, never invented).
    assert _table(md, "| Method | Pass@1") == [["baseline", "0.250", "0.500", "n/a", "0.375"],
                                               ["dpo", "0.438", "0.750", "n/a", "0.625"]]
    # Errors of dpo: initial = iteration 0, final = the last; reduction and relative change.
    errors = _table(md.split("## Errors: dpo")[1], "| Error Type")
    assert errors == [["IndexError", "0.250", "0.062", "+0.188 (+75%)"],
                      ["TypeError", "0.125", "0.062", "+0.062 (+50%)"],
                      ["Other", "0.250", "0.250", "+0.000 (+0%)"],
                      ["**All errors**", "0.625", "0.375", "+0.250"]]
    assert _table(md, "| Method | Iteration | Sampling") == [["dpo", "1", "1.2", "0.5", "2.0", "0.8"],
                                                             ["dpo", "2", "2.5", "0.5", "2.0", "0.8"]]
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == PNG and f"]({name})" in md
    assert sorted(os.listdir(tmp_path)) == sorted(["results.json", "report.md", *PLOTS])  # no temp files left


def test_report_cli_judge_and_api_usage_tables(tmp_path):
    results = _results()
    results["methods"]["dpo"]["iterations"][1]["judge"] = {
        "num_pairs": 12, "decided_by_execution": 7, "decided_by_judge": 4, "ties_broken_by_judge": 4,
        "judge_asked": 12, "judge_unparsed": 1, "judge_agreement": 0.75, "judge_agreement_pairs": 4}
    results["methods"]["dpo"]["iterations"][2]["judge"] = {
        "num_pairs": 3, "decided_by_execution": 0, "decided_by_judge": 3, "ties_broken_by_judge": 3,
        "judge_asked": 3, "judge_unparsed": 0, "judge_agreement": None, "judge_agreement_pairs": 0}
    results["meta"]["api_usage"] = {"judge": {"requests": 15, "cache_hits": 2, "retries": 1, "prompt_tokens": 9000,
                                              "completion_tokens": 300}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    proc = _report("--results", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "report.md").read_text()
    assert _table(md, "| Method | Iteration | Pairs") == [["dpo", "1", "12", "7", "4", "4", "1", "0.750 (4 pairs)"],
                                                         ["dpo", "2", "3", "0", "3", "3", "0", "n/a"]]
    assert _table(md, "| Role | Requests sent") == [["judge", "15", "2", "1", "9000", "300"]]
    assert "## AI judge" not in _report_of(tmp_path, _results())


def _report_of(tmp_path, results):
    out = tmp_path / "plain"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(results))
    assert _report("--results", str(out / "results.json")).returncode == 0
    return (out / "report.md").read_text()


def _partial_no_final():
    r = _results()
    del r["methods"]["dpo"]["final"]
    return json.dumps(r)


def _partial_bad_rate():
    r = _results()
    r["methods"]["dpo"]["iterations"][1]["execution_rate"] = None
    return json.dumps(r)


def _bad_judge():
    r = _results()
    r["methods"]["dpo"]["iterations"][1]["judge"] = {"num_pairs": "twelve"}
    return json.dumps(r)


def _changed(change):
    """_results() as JSON after ``change(results)``: one malformed field the tables or plots would read."""
    r = _results()
    change(r)
    return json.dumps(r)


def _final(r):
    return r["methods"]["dpo"]["final"]


@pytest.mark.parametrize("content,message", [
    (None, "results file not found"),
    ("", "is empty"),
    ('{"meta": {}, "methods": {"dpo": {"iterations": [', "is not valid JSON"),
    ('{"meta": {}, "methods": {}}', "no methods to report"),
    ("[1, 2]", "expected a JSON object, got list"),
    (_partial_no_final(), "methods.dpo.final is missing (the method has not finished)"),
    (_partial_bad_rate(), "methods.dpo.iterations[1].execution_rate is missing or not a number"),
    (_bad_judge(), "methods.dpo.iterations[1].judge must map counts to numbers"),
    # Fields the renderer reads: refused by name, never a traceback from the tables or plots.
    (_changed(lambda r: r["meta"].update(pass_at_k="ab")), "meta.pass_at_k must be a list of positive integers"),
    (_changed(lambda r: r["meta"].update(pass_at_k=5)), "meta.pass_at_k must be a list of positive integers"),
    (_changed(lambda r: r["meta"].update(pass_at_k=[None])), "meta.pass_at_k must be a list of positive integers"),
    (_changed(lambda r: _final(r).update({"pass@x": 0.5})),
     "methods.dpo.final: key 'pass@x' is not pass@<k> with k a positive integer"),
    (_changed(lambda r: _final(r).update(test_families="oops")), "methods.dpo.final.test_families must be an object"),
    (_changed(lambda r: _final(r).update(test_families={"execution_rate": 0.5, "turn_2/pass@1": "abc"})),
     "methods.dpo.final.test_families.turn_2/pass@1 must be a number or null"),
    (_changed(lambda r: _final(r).update({"turn_2/pass@1": "abc"})),
     "methods.dpo.final.turn_2/pass@1 must be a number or null"),
    (_changed(lambda r: _final(r).update({"turn_2/pass@1": 0.1, "repair_rate_stderr": "x"})),
     "methods.dpo.final.repair_rate_stderr must be a number or null"),
    (_changed(lambda r: _final(r).update({"turn_2/pass@1": 0.1, "num_turn_1_failures": "3"})),
     "methods.dpo.final.num_turn_1_failures must be a count or null"),
    (_changed(lambda r: _final(r).update({"turn_2/pass@1": 0.1, "turn_1/error_frequencies": [1, 2]})),
     "methods.dpo.final.turn_1/error_frequencies must map error types to numbers"),
    ('{"meta": {"pass_at_k": [1' + "0" * 5000 + "]}}", "cannot be read as results"),  # past int()'s digit limit
])
def test_report_cli_refuses_bad_results_and_overwrites_nothing(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    before = {"report.md": b"previous report", "pass_rates.png": b"previous plot"}
    for name, data in before.items():
        (tmp_path / name).write_bytes(data)
    proc = _report("--results", str(path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == sorted(["report.md", "pass_rates.png"]
                                                  + (["results.json"] if content is not None else []))
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data


def test_a_diverged_loss_does_not_block_the_report():
    from ieta_jax import report

    results = _results()
    results["methods"]["dpo"]["iterations"][2]["train"]["loss"] = [0.5, float("nan")]
    assert report.validate_results(json.loads(json.dumps(results))) is not None


def test_an_older_results_file_without_pass_at_k_renders(tmp_path):
    results = _results()
    for m in results["methods"].values():
        m["iterations"] = [{"iteration": it["iteration"], "execution_rate": it["execution_rate"]}
                           for it in m["iterations"]]
        m["final"] = {"execution_rate": 0.5}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    proc = _report("--results", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "report.md").read_text()
    assert _table(md, "| Method | Pass@1") == [["baseline", "n/a", "n/a", "n/a", "0.500"],
                                               ["dpo", "n/a", "n/a", "n/a", "0.500"]]
    assert not (tmp_path / "pass_rates.png").exists() and "pass_rates.png" not in md  # no pass@k to plot


@pytest.mark.parametrize("name,make,kind", [("pass_rates.png", os.mkdir, "a directory"),
                                            ("report.md", os.mkdir, "a directory"),
                                            ("report.md", os.mkfifo, "not a regular file")])
def test_an_output_name_taken_by_a_directory_or_fifo_changes_no_output(tmp_path, name, make, kind):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    out = tmp_path / "out"
    out.mkdir()
    before = {n: b"previous " + n.encode() for n in ("report.md", "execution_rates.png", "method_comparison.png")
              if n != name}
    for n, data in before.items():
        (out / n).write_bytes(data)
    make(out / name)
    proc = _report("--results", str(path), "--out_dir", str(out))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: --out_dir {out}: {name} there is {kind}; move it away or choose "
                                        "another --out_dir"]
    assert sorted(os.listdir(out)) == sorted([*before, name])  # no new plot moved in, no staging directory left
    for n, data in before.items():
        assert (out / n).read_bytes() == data


def test_an_out_dir_that_cannot_be_created_is_one_error_line(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    (tmp_path / "afile").write_text("")
    proc = _report("--results", str(path), "--out_dir", str(tmp_path / "afile" / "sub"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: --out_dir {tmp_path / 'afile' / 'sub'} cannot be created or written "
                                        "into (Not a directory)"]


def test_ctrl_c_while_rendering_prints_interrupted_and_changes_no_output(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    (tmp_path / "report.md").write_text("previous report")
    proc = subprocess.Popen([sys.executable, "-m", "ieta_jax.report", "--results", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # SIGINT once rendering has begun (its staging directory exists)
    while not any(n.startswith(".report.") for n in os.listdir(tmp_path)) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (130, "", "interrupted\n")
    assert sorted(os.listdir(tmp_path)) == ["report.md", "results.json"]  # no plot moved in, no staging left
    assert (tmp_path / "report.md").read_text() == "previous report"


def test_ctrl_c_during_the_renames_is_held_until_the_whole_new_set_is_in(tmp_path, monkeypatch, capsys):
    from ieta_jax import report

    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    (tmp_path / "report.md").write_text("previous report")
    replace = os.replace

    def interrupted_replace(src, dst):  # Ctrl-C right after the first plot is in place
        replace(src, dst)
        if not interrupted:
            interrupted.append(dst)
            signal.raise_signal(signal.SIGINT)

    interrupted = []
    monkeypatch.setattr(report.os, "replace", interrupted_replace)
    try:
        rc = report.main(["--results", str(path)])
    except KeyboardInterrupt:
        rc = "KeyboardInterrupt"
    assert rc == 130 and capsys.readouterr().err == "interrupted\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["results.json", "report.md", *PLOTS])
    assert (tmp_path / "report.md").read_text().startswith("# IETA experiment report")
