"""Parity with TRL's GRPOTrainer on fixed completions and rewards: per-update loss and metrics, final parameters.

TRL samples through a ``rollout_func`` that hands out the same completions our ``RLTrainer.build_rollout`` gets;
both score them with the same reward table, then run one or two updates (TRL ``num_iterations``, our
``ppo_epochs``) on the whole rollout at the sampling temperature.
"""

import collections

import numpy as np
import pytest
from flax import nnx  # noqa: F401  (jax before torch keeps the XLA flags of conftest)

from ieta_jax import models, optim, sharding
from ieta_jax.trainers import RLConfig, RLTrainer

from trainers_trl_helpers import EOS, PAD, save_random_llama, text, trl_args, word_tokenizer, assert_params_close

P, G, PROMPT_LEN, MAX_NEW = 2, 4, 3, 5
CASES = {  # every TRL option we share, spread over four runs
    "grpo": dict(loss_type="grpo", scale_rewards="group", beta=0.04, use_bias_correction_kl=True,
                 epsilon_high=None, iterations=2, nan=False),
    "bnpo": dict(loss_type="bnpo", scale_rewards="batch", beta=0.04, use_bias_correction_kl=False,
                 epsilon_high=0.28, iterations=2, nan=False),
    "dr_grpo": dict(loss_type="dr_grpo", scale_rewards="none", beta=0.0, use_bias_correction_kl=True,
                    epsilon_high=None, iterations=1, nan=False),
    "dapo": dict(loss_type="dapo", scale_rewards="group", beta=0.04, use_bias_correction_kl=True,
                 epsilon_high=0.28, iterations=2, nan=True),
    # Two micro-batches per update: TRL shuffles the rollout into them, so only the partition-free quantities
    # (dapo's loss over the whole rollout, the gradient, the parameters) are compared.
    "dapo_accum": dict(loss_type="dapo", scale_rewards="group", beta=0.04, use_bias_correction_kl=True,
                       epsilon_high=None, iterations=1, nan=False, accum=2),
}


def _data(nan):
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, 40, PROMPT_LEN).tolist() for _ in range(P)]
    completions = []
    for _ in range(P * G):
        n = int(rng.integers(2, MAX_NEW + 1))
        c = rng.integers(3, 40, n).tolist()
        if rng.uniform() < 0.5:
            c[-1] = EOS
        completions.append(c)
    rewards = rng.normal(size=P * G).round(2).astype(np.float32)
    if nan:
        rewards[5] = np.nan  # unscorable: advantage 0, out of the group statistics
    return prompts, completions, rewards


@pytest.mark.parametrize("case", sorted(CASES))
def test_grpo_matches_trl(case, tmp_path):
    import torch
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    opts = CASES[case]
    prompts, completions, rewards = _data(opts["nan"])
    table = {(tuple(prompts[i // G]), tuple(c)): float(r) for i, (c, r) in enumerate(zip(completions, rewards))}
    init_dir = save_random_llama(tmp_path / "init")
    lr, temperature, eps = 3e-3, 0.7, 0.2

    # --- TRL
    served = collections.Counter()

    def rollout_func(batch_prompts, trainer):
        p_ids, c_ids = [], []
        for ptext in batch_prompts:
            g = next(i for i, p in enumerate(prompts) if text(p) == ptext)
            c_ids.append(completions[g * G + served[g] % G])
            served[g] += 1
            p_ids.append(prompts[g])
        return {"prompt_ids": p_ids, "completion_ids": c_ids, "logprobs": [[0.0] * len(c) for c in c_ids]}

    def reward_fn(prompts, completions, completion_ids, **kw):  # TRL passes prompt text; map it back to ids
        out = []
        for ptext, c in zip(prompts, completion_ids):
            r = table[(tuple(prompt_of_text[ptext]), tuple(c))]
            out.append(None if np.isnan(r) else r)
        return out

    prompt_of_text = {text(p): p for p in prompts}
    accum = opts.get("accum", 1)
    args = trl_args(GRPOConfig, tmp_path / "trl", num_generations=G,
                    max_completion_length=MAX_NEW, temperature=temperature, learning_rate=lr, beta=opts["beta"],
                    loss_type=opts["loss_type"], scale_rewards=opts["scale_rewards"], epsilon=eps,
                    epsilon_high=opts["epsilon_high"], use_bias_correction_kl=opts["use_bias_correction_kl"],
                    num_iterations=opts["iterations"], max_steps=opts["iterations"], weight_decay=0.01,
                    per_device_train_batch_size=P * G // accum, gradient_accumulation_steps=accum)
    model = transformers.AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32)
    trl = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args,
                      train_dataset=Dataset.from_list([{"prompt": text(p)} for p in prompts]),
                      processing_class=word_tokenizer(), rollout_func=rollout_func)
    trl.train()
    logs = [h for h in trl.state.log_history if "loss" in h]
    assert len(logs) == opts["iterations"]

    # --- ours
    config = RLConfig(batch_size=P * G, prompts_per_step=P, num_generations=G, max_prompt_length=PROMPT_LEN,
                      max_new_tokens=MAX_NEW, temperature=temperature, eos_token_id=EOS, pad_token_id=PAD,
                      ppo_epochs=opts["iterations"], clip_eps=eps, epsilon_high=opts["epsilon_high"],
                      beta=opts["beta"], use_bias_correction_kl=opts["use_bias_correction_kl"],
                      loss_type=opts["loss_type"], scale_rewards=opts["scale_rewards"], progress=False,
                      optim=optim.OptimConfig(learning_rate=lr, total_steps=10, schedule="constant",
                                              weight_decay=0.01, grad_accum_steps=accum))
    ours = RLTrainer(models.from_pretrained(init_dir), config, mesh=sharding.make_mesh(),
                     execution_reward=lambda idx, comps: [table[(tuple(prompts[i]), tuple(c))]
                                                          for i, c in zip(idx, comps)])
    batch, rollout = ours.build_rollout(prompts, np.arange(P), completions)
    updates = ours.update(batch, per_update=True)

    for k in ("reward", "reward_std", "frac_reward_zero_std"):
        assert rollout[k] == pytest.approx(logs[0][k], rel=1e-5, abs=1e-6), k
    keys = ["entropy", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
            "clip_ratio/low_min", "clip_ratio/high_max"] + (["kl"] if opts["beta"] else [])
    if accum > 1:
        keys = []
    for step, (mine, theirs) in enumerate(zip(updates, logs)):
        assert mine["train/loss"] == pytest.approx(theirs["loss"], rel=1e-4, abs=1e-6), (step, "loss")
        assert mine["train/grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4), (step, "grad_norm")
        for k in keys:
            assert mine[k] == pytest.approx(theirs[k], rel=1e-4, abs=1e-6), (step, k)
    if opts["iterations"] > 1:  # the second update moved off-policy: the ratio is no longer 1
        assert updates[1]["kl"] > 0
    assert_params_close(ours.model, trl.model, init_dir, tmp_path / "ours")
