"""Subprocess for the kill -9 resume test: a small DPO run with checkpoints, history written as JSON at the end.

usage: python resume_run.py WORKDIR OUT_JSON STEP_DELAY_S
The delay (a sleep before each step) only widens the window in which the parent can kill it mid-run.
"""
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from ieta_jax import models, optim, sharding  # noqa: E402
from ieta_jax.trainers import DPOConfig, DPOTrainer, PreferencePair  # noqa: E402

workdir, out_json, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = models.ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
rng = np.random.default_rng(0)
pairs = [PreferencePair(rng.integers(1, 32, 4).tolist(), rng.integers(1, 32, 5).tolist(),
                        rng.integers(1, 32, 3).tolist()) for _ in range(12)]
config = DPOConfig(batch_size=4, max_length=12, beta=0.5, save_every=2, keep_checkpoints=2, progress=False,
                   optim=optim.OptimConfig(learning_rate=3e-3, warmup_steps=2, total_steps=12))
trainer = DPOTrainer(models.CausalLM(cfg, rngs=nnx.Rngs(0)), config, mesh=sharding.make_mesh(), workdir=workdir)
print(f"resumed_from_step={trainer.step}", flush=True)
step_fn = trainer.train_step


def slow_step(batch):
    time.sleep(delay)
    return step_fn(batch)


trainer.train_step = slow_step
trainer.fit(pairs, 12)
trainer.close()
with open(out_json, "w") as f:
    json.dump(trainer.history, f)
print("done", flush=True)
