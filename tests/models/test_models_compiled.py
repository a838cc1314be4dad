"""What XLA makes of our model: work that must not be repeated inside the compiled train step."""
import re

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import models
from ieta_jax.bench.model import jax_train_step


def test_train_step_computes_the_rotary_tables_once():
    """cos and sin of the rotary angles are read by every layer's query and key rotation, forward and backward;
    fused there, XLA recomputed them in each (20 of each for 4 layers). Computed once, each appears once."""
    cfg = models.ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    params, step = jax_train_step(models.CausalLM(cfg, rngs=nnx.Rngs(0)), mesh=None)  # bench.model's own step
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 16)), jnp.int32)
    mask = jnp.ones((2, 16), jnp.int32).at[0, :3].set(0)
    hlo = step.lower(params, ids, mask).compile().as_text()
    assert len(re.findall(r" sine\(", hlo)) == 1
    assert len(re.findall(r" cosine\(", hlo)) == 1
