"""Reward models score on the same token as transformers' *ForSequenceClassification, also when pad == EOS."""

import numpy as np
import pytest
import torch
from flax import nnx

from ieta_jax import models, optim, sharding
from ieta_jax.trainers import PreferencePair, RewardConfig, RewardTrainer

EOS = 2  # also the pad token, as the experiment sets it when a tokenizer has none


def _hf_scores(directory, ids, mask):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long),
                     attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()


def _rows():
    """Right-padded rows whose completions end with EOS (== pad); one without EOS (truncated)."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 40, 6).tolist() + [EOS], rng.integers(3, 40, 9).tolist() + [EOS],
            rng.integers(3, 40, 4).tolist() + [EOS], rng.integers(3, 40, 11).tolist()]
    ids = np.full((4, 12), EOS, np.int32)
    mask = np.zeros((4, 12), np.int32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1
    return ids, mask


def test_random_hf_reward_model_scores_identically(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    hf = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_labels=1, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=1))
    hf.save_pretrained(tmp_path)
    ids, mask = _rows()
    rm = models.from_pretrained(str(tmp_path), model_class=models.RewardModel)
    ours = np.asarray(rm(ids, attention_mask=mask))
    np.testing.assert_allclose(ours, _hf_scores(str(tmp_path), ids, mask), rtol=1e-4, atol=1e-5)
    assert int(models.score_index(ids, mask, EOS)[0]) == 5  # row 0: 6 tokens then EOS; read before the EOS


def test_trained_reward_model_exports_with_its_pad_id_and_scores_identically(tmp_path):
    cfg = models.ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, eos_token_id=EOS)  # no pad id
    rng = np.random.default_rng(1)
    pairs = [PreferencePair(rng.integers(3, 40, 3).tolist(), rng.integers(3, 40, 4).tolist() + [EOS],
                            rng.integers(3, 40, 6).tolist() + [EOS]) for _ in range(8)]
    trainer = RewardTrainer(models.RewardModel(cfg, rngs=nnx.Rngs(0)),
                            RewardConfig(batch_size=8, max_length=12, pad_token_id=EOS, progress=False,
                                         optim=optim.OptimConfig(learning_rate=1e-2, schedule="constant")),
                            mesh=sharding.make_mesh())
    trainer.fit(pairs, 3)
    models.save_pretrained(trainer.model, str(tmp_path))
    ids, mask = _rows()
    ours = trainer.score([list(r[:3]) for r in ids], [list(r[3:m.sum()]) for r, m in zip(ids, mask)])
    np.testing.assert_allclose(ours, _hf_scores(str(tmp_path), ids, mask), rtol=1e-4, atol=1e-5)
    with pytest.warns(UserWarning, match="pad_token_id"):
        RewardTrainer(models.RewardModel(cfg.replace(pad_token_id=0), rngs=nnx.Rngs(0)),
                      RewardConfig(batch_size=8, max_length=12, pad_token_id=EOS, progress=False),
                      mesh=sharding.make_mesh())
