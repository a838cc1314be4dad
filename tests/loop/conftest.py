"""One tiny end-to-end run of the real CLI, shared by the loop tests (session scope)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIG = os.path.join("tests", "loop", "tiny_config.py")


def run_env():
    env = dict(os.environ)
    # Two fake CPU devices: the data axis is really sharded, and 2 cores are not oversubscribed.
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main_cmd(workdir, *overrides):
    return [sys.executable, "-m", "launch.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}", *overrides]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Workdir of a finished `--config=tests/loop/tiny_config.py` run (method all)."""
    workdir = str(tmp_path_factory.mktemp("loop") / "run")
    proc = subprocess.run(main_cmd(workdir), cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return workdir
