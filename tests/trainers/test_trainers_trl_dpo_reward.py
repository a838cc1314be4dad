"""Whole-run parity with TRL's DPOTrainer and RewardTrainer: same tiny random Llama, pairs and batches, 10 steps.

Every step trains on all 8 pairs (one batch), so the data order cannot differ; the optimizer is AdamW with
weight decay (HF's no-decay mask on norms), global-norm clipping at 1 and a constant learning rate on both sides.
"""

import numpy as np
import pytest
from flax import nnx  # noqa: F401  (jax before torch keeps the XLA flags of conftest)

from ieta_jax import models, optim, sharding
from ieta_jax.trainers import DPOConfig, DPOTrainer, PreferencePair, RewardConfig, RewardTrainer

from trainers_trl_helpers import EOS, PAD, assert_params_close, save_random_llama, text, trl_args, word_tokenizer

N, STEPS, LR, MAX_LEN = 8, 10, 1e-3, 16


def _pairs():
    rng = np.random.default_rng(7)
    body = lambda k: rng.integers(3, 40, k).tolist()  # noqa: E731
    return [PreferencePair(body(int(rng.integers(2, 5))), body(int(rng.integers(2, 6))) + [EOS],
                           body(int(rng.integers(2, 6))) + [EOS]) for _ in range(N)]


def _dataset(pairs):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": text(p.prompt), "chosen": text(p.chosen), "rejected": text(p.rejected)}
                              for p in pairs])


def _our_optim():
    return optim.OptimConfig(learning_rate=LR, total_steps=100, schedule="constant", weight_decay=0.01)


def _compare_rows(ours, logs, keys, skip_first=()):
    assert len(ours) == len(logs) == STEPS
    for step, (mine, theirs) in enumerate(zip(ours, logs)):
        assert mine["train/loss"] == pytest.approx(theirs["loss"], rel=1e-4, abs=1e-6), (step, "loss")
        assert mine["train/grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-3, abs=1e-6), (step, "grad")
        for k in keys:
            if step == 0 and k in skip_first:
                continue
            assert mine[k] == pytest.approx(theirs[k], rel=1e-3, abs=1e-5), (step, k)


DPO_CASES = {
    "sigmoid": dict(loss_type="sigmoid"),
    "hinge": dict(loss_type="hinge"),
    "ipo": dict(loss_type="ipo"),
    "robust": dict(loss_type="robust", label_smoothing=0.1),
    "rpo": dict(loss_type="sigmoid", sft_weight=0.5),
}


@pytest.mark.parametrize("case", sorted(DPO_CASES))
def test_dpo_matches_trl(case, tmp_path):
    import torch
    import transformers
    from trl import DPOConfig as TRLConfig, DPOTrainer as TRLTrainer

    opts = dict(DPO_CASES[case])
    pairs = _pairs()
    init_dir = save_random_llama(tmp_path / "init")
    sft = opts.pop("sft_weight", 0.0)
    trl_loss = dict(loss_type=[opts["loss_type"], "sft"], loss_weights=[1.0, sft]) if sft else \
        dict(loss_type=[opts["loss_type"]])
    args = trl_args(TRLConfig, tmp_path / "trl", per_device_train_batch_size=N, max_steps=STEPS, learning_rate=LR,
                    beta=0.1, label_smoothing=opts.get("label_smoothing", 0.0), weight_decay=0.01,
                    max_length=None, **trl_loss)
    model = transformers.AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32)
    trl = TRLTrainer(model=model, args=args, train_dataset=_dataset(pairs), processing_class=word_tokenizer())
    trl.train()
    logs = [h for h in trl.state.log_history if "loss" in h]

    config = DPOConfig(batch_size=N, max_length=MAX_LEN, beta=0.1, pad_token_id=PAD, progress=False,
                       optim=_our_optim(), sft_weight=sft, **opts)
    ours = DPOTrainer(models.from_pretrained(init_dir), config, mesh=sharding.make_mesh())
    rows = ours.fit(pairs, STEPS)
    # Step 1 compares rounding noise of policy == reference for the accuracy; later steps must agree.
    _compare_rows(rows, logs, ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                               "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected"],
                  skip_first=("rewards/accuracies",))
    assert rows[-1]["rewards/margins"] > 0.01  # it trained
    assert_params_close(ours.model, trl.model, init_dir, tmp_path / "ours")


def test_reward_model_matches_trl_with_pad_equal_to_eos(tmp_path):
    import torch
    import transformers
    from trl import RewardConfig as TRLConfig, RewardTrainer as TRLTrainer

    pairs = _pairs()
    init_dir = save_random_llama(tmp_path / "init", sequence_classification=True, pad_token_id=EOS)
    tokenizer = word_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token  # pad == EOS, as the experiment sets it for pad-less tokenizers
    args = trl_args(TRLConfig, tmp_path / "trl", per_device_train_batch_size=N, max_steps=STEPS, learning_rate=LR,
                    weight_decay=0.01)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(init_dir, dtype=torch.float32)
    trl = TRLTrainer(model=model, args=args, train_dataset=_dataset(pairs), processing_class=tokenizer)
    trl.train()
    logs = [h for h in trl.state.log_history if "loss" in h]

    config = RewardConfig(batch_size=N, max_length=MAX_LEN, pad_token_id=EOS, progress=False, optim=_our_optim())
    ours = RewardTrainer(models.from_pretrained(init_dir, model_class=models.RewardModel), config,
                         mesh=sharding.make_mesh())
    rows = ours.fit(pairs, STEPS)
    _compare_rows(rows, logs, ["accuracy", "margin", "mean_reward", "min_reward", "max_reward"])
    assert rows[-1]["accuracy"] > rows[0]["accuracy"] or rows[-1]["margin"] > rows[0]["margin"]
    assert_params_close(ours.model, trl.model, init_dir, tmp_path / "ours")
