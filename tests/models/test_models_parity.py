"""Our Flax model vs transformers (torch CPU) on tiny random checkpoints: logits, round trip, reward model."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import hf_logits, padded_batch

from ieta_jax import models

NAMES = ["llama", "llama3_tied", "qwen2", "mistral", "llama_linear", "llama_dynamic"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
def test_logits_match_transformers(hf_checkpoints, name, left):
    ids, mask, positions = padded_batch(seed=1, left=left)
    ref = hf_logits(hf_checkpoints[name], ids, mask, positions)
    model = models.from_pretrained(hf_checkpoints[name], dtype="float32")
    ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
    valid = mask.astype(bool)
    assert ours.shape == ref.shape
    np.testing.assert_array_less(np.abs(ours[valid] - ref[valid]).max(), 1e-4)
