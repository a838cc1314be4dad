"""Our Flax model vs transformers (torch CPU) on tiny random checkpoints: logits, round trip, reward model."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from models_helpers import hf_logits, padded_batch

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


@pytest.mark.parametrize("name", ["llama", "qwen2", "llama3_tied"])
def test_saved_checkpoint_loads_in_transformers(hf_checkpoints, name, tmp_path):
    """HF -> ours -> save_pretrained (forced into several shards with an index) -> transformers: same logits."""
    ids, mask, positions = padded_batch(seed=2, left=True)
    ref = hf_logits(hf_checkpoints[name], ids, mask, positions)
    model = models.from_pretrained(hf_checkpoints[name])
    models.save_pretrained(model, str(tmp_path), max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2
    again = hf_logits(str(tmp_path), ids, mask, positions)
    valid = mask.astype(bool)
    np.testing.assert_array_less(np.abs(again[valid] - ref[valid]).max(), 1e-5)
    # and our loader reads the sharded checkpoint back
    reloaded = models.from_pretrained(str(tmp_path))
    np.testing.assert_allclose(np.asarray(reloaded(ids, mask))[valid], ref[valid], atol=1e-4)


def test_bf16_params_roundtrip_and_compute(hf_checkpoints, tmp_path):
    """bf16 storage + bf16 compute stays close to the fp32 reference; a bf16 save loads in transformers as bf16."""
    import torch
    from transformers import AutoModelForCausalLM

    ids, mask, positions = padded_batch(seed=3, left=False)
    ref = hf_logits(hf_checkpoints["llama"], ids, mask, positions)
    model = models.from_pretrained(hf_checkpoints["llama"], dtype="bfloat16")
    assert model.model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    ours = np.asarray(model(ids, mask))
    valid = mask.astype(bool)
    assert ours.dtype == np.float32
    err = np.abs(ours[valid] - ref[valid]).max()
    assert 0 < err < 0.05 * np.abs(ref[valid]).max() + 1e-2
    models.save_pretrained(model, str(tmp_path))
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert next(hf.parameters()).dtype == torch.bfloat16


@pytest.fixture(scope="module")
def hf_reward_checkpoint(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from models_helpers import TINY

    torch.manual_seed(7)
    hf = LlamaForSequenceClassification(LlamaConfig(**TINY, num_labels=1, pad_token_id=0))
    path = tmp_path_factory.mktemp("hf_rm")
    hf.save_pretrained(path)
    return str(path)


def _hf_rewards(path, ids, mask):
    import torch
    from transformers import AutoModelForSequenceClassification

    hf = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        pos = torch.tensor(np.maximum(np.cumsum(mask, -1) - 1, 0))
        return hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=pos).logits[:, 0].numpy()


@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
def test_reward_model_matches_transformers_and_roundtrips(hf_reward_checkpoint, left, tmp_path):
    ids, mask, _ = padded_batch(seed=4, left=left)
    ref = _hf_rewards(hf_reward_checkpoint, ids, mask)
    rm = models.from_pretrained(hf_reward_checkpoint, model_class=models.RewardModel)
    ours = np.asarray(rm(ids, mask))
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert np.ptp(ref) > 1e-3  # rows differ, so reading the wrong token would be caught
    models.save_pretrained(rm, str(tmp_path))
    np.testing.assert_allclose(_hf_rewards(str(tmp_path), ids, mask), ref, atol=1e-5)


def test_reward_model_from_causal_lm_checkpoint(hf_checkpoints):
    """The backbone comes from the LM checkpoint; the missing score head is initialised (not an error)."""
    lm = models.from_pretrained(hf_checkpoints["llama"])
    rm = models.from_pretrained(hf_checkpoints["llama"], model_class=models.RewardModel)
    np.testing.assert_array_equal(rm.model.layers[1].mlp.down_proj.kernel[...],
                                  lm.model.layers[1].mlp.down_proj.kernel[...])
    ids, mask, _ = padded_batch(seed=8, left=True)
    rewards = np.asarray(rm(ids, mask))
    assert rewards.shape == (3,) and np.all(np.isfinite(rewards)) and np.ptp(rewards) > 0
