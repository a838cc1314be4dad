"""Every shipped config validates; a bad value fails at start-up with a message naming the field."""
import importlib
import subprocess
import sys

import pytest

from configs import base
from conftest import REPO, run_env

CONFIGS = ("smoke", "gpu_smoke", "humaneval_dpo", "humaneval_rlaif", "mbpp_dpo", "tpu_pod")


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_validate(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    base.validate(config)
    assert config.method in base.METHODS


@pytest.mark.parametrize("field,value,message", [
    ("method", "ppo", "config.method must be one of"),
    ("dpo.beta", -1.0, "config.dpo.beta must be > 0"),
    ("dpo.loss_type", "kto", "config.dpo.loss_type must be one of"),
    ("pass_at_k", (1, 100), "config.pass_at_k asks for k=100 but config.eval_num_samples=10"),
    ("num_samples", 0, "config.num_samples must be an integer >= 1"),
    ("sandbox.backend", "docker", "config.sandbox.backend must be one of"),
    ("mesh.fsdp", 0, "config.mesh.fsdp must be an integer >= 1 or -1"),
    ("tiny.hidden_size", 130, "config.tiny.hidden_size must be divisible by config.tiny.num_heads=4"),
    ("timeout_s", 0.0, "config.timeout_s must be > 0"),
    ("model", "/nonexistent/ckpt", "config.model is not a checkpoint directory"),
    ("dataset", "humaneval", "config.dataset must be 'synthetic' with model='tiny'"),
    ("batch_size", 7, "config.batch_size must divide config.rlaif.prompts_per_step x config.num_samples"),
])
def test_bad_value_names_the_field(field, value, message):
    config = importlib.import_module("configs.smoke").get_config()
    node, key = config, field
    if "." in field:
        head, key = field.split(".")
        node = config[head]
    node[key] = value
    with pytest.raises(base.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        base.validate(config)


def test_launch_main_fails_at_start_up_naming_the_field(tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "launch.main", "--config=configs/smoke.py",
                               f"--workdir={tmp_path / 'w'}", *flags], cwd=REPO, env=run_env(),
                              capture_output=True, text=True, timeout=120)

    bad = run("--config.dpo.beta=-0.5")
    assert bad.returncode == 2
    assert "config.dpo.beta must be > 0, got -0.5" in bad.stderr
    assert not (tmp_path / "w" / "tiny_model").exists()  # nothing started
    unknown = run("--config.dpo.betta=0.5")
    assert unknown.returncode == 2
    assert "config.dpo.betta" in unknown.stderr and "beta" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    typed = run("--config.num_iterations=two")
    assert typed.returncode == 2 and "--config.num_iterations" in typed.stderr
