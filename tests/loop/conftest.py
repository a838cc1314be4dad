"""One tiny end-to-end run of the real CLI, shared by the loop tests (session scope)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIG = os.path.join("tests", "loop", "tiny_config.py")


# Set by the `shared_compilation_cache` fixture: the directory every CLI run of the test session compiles into.
SHARED_CACHE_ENV = "IETA_TEST_COMPILATION_CACHE"


def run_env():
    env = dict(os.environ)
    # Two fake CPU devices: the data axis is really sharded, and 2 cores are not oversubscribed.
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    # Every executable goes to the shared cache, not only those that took over a second to compile.
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def main_cmd(workdir, *overrides):
    """The experiment's CLI on the tiny test config; a run reads and writes the session's shared compilation cache
    (an override given later wins)."""
    cache = os.environ.get(SHARED_CACHE_ENV)
    shared = [f"--config.compilation_cache={cache}"] if cache else []
    return [sys.executable, "-m", "launch.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}", *shared,
            *overrides]


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One XLA compilation cache for all the session's CLI runs: most compile the same tiny-model steps, and compiling
    is most of a tiny run's time (the multi-host reference run: 82-118 s cold, 34 s warm). Under pytest-xdist the
    workers' base temp directories share a parent, so both workers use one cache. Results do not depend on it: an
    executable read back is the one XLA compiled, and a torn entry (a run killed while writing) is only recompiled."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "xla_cache"
    path.mkdir(exist_ok=True)
    os.environ[SHARED_CACHE_ENV] = str(path)
    yield str(path)
    os.environ.pop(SHARED_CACHE_ENV, None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Workdir of a finished `--config=tests/loop/tiny_config.py` run (method all)."""
    workdir = str(tmp_path_factory.mktemp("loop") / "run")
    proc = subprocess.run(main_cmd(workdir), cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return workdir


@pytest.fixture(scope="session")
def saved_tiny_policy(tmp_path_factory):
    """A tiny policy in the experiment's saved format (tokenizer trained on the synthetic corpus, random weights;
    160 positions: prompts up to 128 tokens + 16 new ones)."""
    from configs import base
    from ieta_jax import sharding, tiny

    c = base.get_config()
    c.tiny.max_position_embeddings, c.tiny.hidden_size, c.tiny.intermediate_size = 160, 32, 64
    c.tiny.num_heads, c.tiny.num_kv_heads, c.tiny.vocab_size = 2, 1, 320
    c.tiny.solutions_per_task, c.tiny.warm_start_steps = 1, 0
    c.max_prompt_len, c.max_new_tokens = 128, 16
    return tiny.ensure_tiny_model(c, str(tmp_path_factory.mktemp("tiny_policy")), sharding.make_mesh())
