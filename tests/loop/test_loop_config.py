"""Every shipped config validates; a bad value fails at start-up with a message naming the field."""
import importlib
import re

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
    ("pass_at_k", (1, 100), "config.pass_at_k asks for k=100 but config.eval_num_samples=5"),
    ("num_samples", 0, "config.num_samples must be an integer >= 1"),
    ("sandbox.backend", "docker", "config.sandbox.backend must be one of"),
    ("sandbox.platform", "vmx", "config.sandbox.platform must be one of ('ptrace', 'systrap', 'kvm')"),
    ("mesh.fsdp", 0, "config.mesh.fsdp must be an integer >= 1 or -1"),
    ("tiny.hidden_size", 130, "config.tiny.hidden_size must be divisible by config.tiny.num_heads=4"),
    ("timeout_s", 0.0, "config.timeout_s must be in (0, 600]"),
    ("timeout_s", 700.0, "config.timeout_s must be in (0, 600]"),  # the sandbox's MAX_TIMEOUT_S
    ("memory_mb", 16, "config.memory_mb must be an integer in [32, 16384]"),  # the sandbox's bounds
    ("model", "/nonexistent/ckpt", "config.model is not a checkpoint directory"),
    ("dataset", "humaneval", "config.dataset must be 'synthetic' with model='tiny'"),
    ("batch_size", 7, "config.batch_size must divide config.rlaif.prompts_per_step x config.num_samples"),
    ("max_turns", 64, "config.batch_size must be >= 1 + (config.max_turns - 1) x config.rlaif.repair_fixes = 64"),
    ("rlaif.repair_fixes", 16,
     "config.batch_size must be >= 1 + (config.max_turns - 1) x config.rlaif.repair_fixes = 17"),
])
def test_bad_value_names_the_field(field, value, message):
    config = importlib.import_module("configs.smoke").get_config()
    node, key = config, field
    if "." in field:
        head, key = field.split(".")
        node = config[head]
    node[key] = value
    with pytest.raises(base.ConfigError, match=re.escape(message)):
        base.validate(config)


@pytest.mark.parametrize("name", [f.name for f in base.FIELDS if isinstance(f.default, float)])
def test_no_float_field_accepts_infinity(name):
    config = base.get_config()
    *groups, leaf = name.split(".")
    node = config[groups[0]] if groups else config
    node[leaf] = float("inf")
    with pytest.raises(base.ConfigError, match=re.escape(f"config.{name} must be")):
        base.validate(config)


def test_readme_field_table_is_the_declaration():
    """The README's config table is configs.base.markdown_table() (generated from FIELDS), row for row."""
    import os

    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    table = base.markdown_table()
    assert table in readme
    assert readme.count("| Field | Default | Meaning |") == 1
    assert len(table.splitlines()) == len(base.FIELDS) + 2


def test_table_into_a_closed_pipe_stops_quietly():
    """``python -m configs.base | head -1``: the reader left before the table was written; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "configs.base"], cwd=REPO, env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read() == b""


def test_every_field_is_declared_once_and_validated_where_declared():
    names = [f.name for f in base.FIELDS]
    assert len(names) == len(set(names))
    c = base.get_config()
    assert sorted(base.leaf_values(c.to_dict())) == sorted(names)
    for f in base.FIELDS:
        if f.check is not None:
            assert f.check(f.default) is None, f.name


def test_changed_fields_names_leaves_and_skips_fields_that_do_not_change_results():
    a = base.get_config().to_dict()
    b = base.get_config()
    b.dpo.beta = 0.5
    b.sandbox.workers = 9
    b.num_text_samples = 1
    b.pass_at_k = (1, 5)
    assert base.changed_fields(a, b.to_dict()) == ["dpo.beta", "pass_at_k"]


def test_the_runsc_platform_goes_to_gvisor_and_ray_pools_only():
    from ieta_jax.experiment import library_configs
    config = importlib.import_module("configs.smoke").get_config()
    config.sandbox.platform = "systrap"
    assert library_configs.executor_kwargs(config)["platform"] == "systrap"
    config.sandbox.backend = "ray"
    assert library_configs.executor_kwargs(config)["platform"] == "systrap"
    config.sandbox.backend = "process"
    with pytest.raises(base.ConfigError, match=re.escape("config.sandbox.platform applies to backend=gvisor or ray")):
        base.validate(config)
    config.sandbox.platform = "ptrace"  # the default: the process backend has nothing to pass it to
    base.validate(config)
    assert "platform" not in library_configs.executor_kwargs(config)
