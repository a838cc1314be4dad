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


@pytest.mark.parametrize("name", ["llama", "mistral"])
@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
def test_fused_attention_path_matches_einsum_path(hf_checkpoints, name, left, monkeypatch):
    """`attention="cudnn"` hands q, k, v and the mask to `jax.nn.dot_product_attention` (GQA head order, padding,
    causality and the sliding window all in that call's conventions). cuDNN needs a GPU, so here the same call runs
    with its XLA implementation: logits and gradients must equal the einsum path's, which is what makes a GPU's
    cuDNN kernel compute this model."""
    from flax import nnx

    from ieta_jax.models import llama

    real_cudnn_attention = llama.cudnn_attention
    monkeypatch.setattr(llama, "cudnn_attention",
                        lambda q, k, v, mask_bias, required: llama.fused_attention(q, k, v, mask_bias, "xla"))
    ids, mask, _ = padded_batch(seed=2, left=left)
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)

    def loss_and_grads(attention):
        model = models.from_pretrained(hf_checkpoints[name], dtype="float32", attention=attention)
        graphdef, params = nnx.split(model)

        def loss(params):
            logits = nnx.merge(graphdef, params)(ids, mask)
            return (jnp.where(mask[..., None] > 0, logits, 0.0) ** 2).mean(), logits

        (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return np.asarray(logits), jax.tree.leaves(grads)

    ref_logits, ref_grads = loss_and_grads("xla")
    fused_logits, fused_grads = loss_and_grads("cudnn")
    valid = np.asarray(mask).astype(bool)
    np.testing.assert_allclose(fused_logits[valid], ref_logits[valid], atol=2e-5, rtol=1e-5)
    for a, b in zip(fused_grads, ref_grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=1e-4)
    # "auto" (the default) runs the einsum path on this CPU backend: no call reaches the fused function.
    monkeypatch.setattr(llama, "cudnn_attention", real_cudnn_attention)
    monkeypatch.setattr(llama, "fused_attention", None)
    auto_logits, _ = loss_and_grads("auto")
    np.testing.assert_array_equal(auto_logits, ref_logits)


def test_attention_option_is_validated():
    with pytest.raises(ValueError, match="attention="):
        models.ModelConfig(attention="flash")
