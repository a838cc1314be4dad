"""`tensorboard --logdir <workdir>` serves the run's scalars: read them back over its HTTP API."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


@pytest.fixture
def tensorboard_url(tiny_run):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", tiny_run, "--host", "127.0.0.1",
                             "--port", str(port), "--reload_interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                runs = _get(url + "/data/runs")
                if any(r.startswith("tensorboard/dpo") for r in runs) and any(
                        r.startswith("tensorboard/rlaif") for r in runs):
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("tensorboard exited: " + proc.stderr.read().decode()[-2000:])
            if time.time() > deadline:
                raise TimeoutError("tensorboard did not serve the runs within 90 s")
            time.sleep(1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def _scalars(url, run, tag):
    q = urllib.parse.urlencode({"run": run, "tag": tag})
    return [(step, value) for _, step, value in _get(f"{url}/data/plugin/scalars/scalars?{q}")]


def test_scalars_read_back_over_http(tiny_run, tensorboard_url):
    with open(os.path.join(tiny_run, "results.json")) as f:
        results = json.load(f)
    tags = _get(tensorboard_url + "/data/plugin/scalars/tags")
    for method in ("baseline", "dpo", "rlaif"):
        run = f"tensorboard/{method}"
        assert "eval/pass@1" in tags[run] and "eval/execution_rate" in tags[run]
        got = dict(_scalars(tensorboard_url, run, "eval/pass@1"))
        want = {it["iteration"]: it["pass@1"] for it in results["methods"][method]["iterations"]}
        assert got.keys() == want.keys()
        for step, value in want.items():
            assert got[step] == pytest.approx(value, abs=1e-6)
        got = dict(_scalars(tensorboard_url, run, "eval/error_frequency/Other"))
        assert got[0] == pytest.approx(results["methods"][method]["iterations"][0]["error_frequencies"]["Other"])
    # Training curves under the trainers' metric names, one point per optimizer step.
    dpo_loss = _scalars(tensorboard_url, "tensorboard/dpo", "train/loss")
    want = [v for it in results["methods"]["dpo"]["iterations"][1:] for v in it["train"]["loss"]]
    assert [step for step, _ in dpo_loss] == list(range(1, len(want) + 1))
    assert [round(v, 5) for _, v in dpo_loss] == [round(v, 5) for v in want]
    assert "rewards/accuracies" in tags["tensorboard/dpo"]
    assert {"reward", "kl"} <= set(tags["tensorboard/rlaif"])
    assert "accuracy" in tags["tensorboard/rlaif_reward_model"]
    assert "train/loss" in tags["tensorboard/warm_start"]
    # Sample programs with their traces, as text.
    text_tags = _get(tensorboard_url + "/data/plugin/text/tags")
    assert any(t.startswith("samples/") for t in text_tags["tensorboard/dpo"])
