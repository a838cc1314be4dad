"""What XLA makes of our model: work that must not be repeated inside the compiled train step."""
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import models
from ieta_jax.trainers.base import sequence_logps


def test_train_step_computes_the_rotary_tables_once():
    """cos and sin of the rotary angles are read by every layer's query and key rotation, forward and backward;
    fused there, XLA recomputed them in each (20 of each for 4 layers). Computed once, each appears once."""
    cfg = models.ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    graphdef, params = nnx.split(models.CausalLM(cfg, rngs=nnx.Rngs(0)))

    def loss(params, ids, mask):
        logp, n_tok, _, _ = sequence_logps(nnx.merge(graphdef, params)(ids, mask), ids, mask)
        return -logp.sum() / n_tok.sum()

    ids = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 16)), jnp.int32)
    mask = jnp.ones((2, 16), jnp.int32).at[0, :3].set(0)
    hlo = jax.jit(jax.value_and_grad(loss)).lower(params, ids, mask).compile().as_text()
    assert len(re.findall(r" sine\(", hlo)) == 1
    assert len(re.findall(r" cosine\(", hlo)) == 1
