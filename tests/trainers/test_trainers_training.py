"""Trainers end to end on tiny models: masks, learning, sharding invariance, non-finite skips, resume after kill -9."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ieta_jax import models, optim, sharding
from ieta_jax.metric_writer import read_scalars
from ieta_jax.trainers import (DPOConfig, DPOTrainer, PreferencePair, PromptCompletion, RewardConfig, RewardTrainer,
                               RLConfig, RLTrainer, SFTConfig, SFTTrainer)
from ieta_jax.trainers.base import sequence_logps
from ieta_jax.trainers.batching import pad_sequences

CFG = models.ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [PreferencePair(rng.integers(1, 32, 4).tolist(), rng.integers(1, 32, 5).tolist(),
                           rng.integers(1, 32, 3).tolist()) for _ in range(n)]


def _const_optim(lr, steps=100, **kw):
    return optim.OptimConfig(learning_rate=lr, total_steps=steps, schedule="constant", **kw)


def test_loss_mask_excludes_prompt_and_padding_and_matches_numpy_logps():
    arrays = pad_sequences([[5, 6, 7], [9]], [[1, 2], [3, 4, 8]], max_length=7, pad_token_id=0)
    np.testing.assert_array_equal(arrays["loss_mask"], [[0, 0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(arrays["attention_mask"], [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0, 0]])
    model = models.CausalLM(CFG, rngs=nnx.Rngs(0))
    logits = model(jnp.asarray(arrays["input_ids"]), attention_mask=jnp.asarray(arrays["attention_mask"]))
    logp, n_tok, _, _ = sequence_logps(logits, jnp.asarray(arrays["input_ids"]), jnp.asarray(arrays["loss_mask"]))
    lg = np.asarray(logits, np.float64)
    lsm = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    expect = [lsm[0, 2, 1] + lsm[0, 3, 2], lsm[1, 0, 3] + lsm[1, 1, 4] + lsm[1, 2, 8]]
    np.testing.assert_allclose(np.asarray(logp), expect, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(n_tok), [2, 3])


def test_dpo_drives_accuracy_to_one_with_precomputed_reference(tmp_path):
    pairs = _pairs(8)
    config = DPOConfig(batch_size=8, max_length=12, beta=0.5, progress=False, optim=_const_optim(5e-3))
    trainer = DPOTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), config, mesh=sharding.make_mesh(),
                         workdir=str(tmp_path))
    rows = trainer.fit(pairs, 20)
    trainer.close()
    # Step 1 sees policy == reference: implicit rewards exactly zero, loss log 2.
    assert rows[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["train/loss"] == pytest.approx(np.log(2), rel=1e-5)
    assert rows[-1]["rewards/accuracies"] == 1.0
    assert rows[-1]["rewards/margins"] > 1.0 and rows[-1]["train/loss"] < 0.2
    scalars = read_scalars(os.path.join(str(tmp_path), "tensorboard"))
    for tag in ("rewards/accuracies", "rewards/margins", "logps/chosen", "logits/rejected", "train/learning_rate",
                "train/grad_norm", "train/skipped_steps", "perf/tokens_per_sec"):
        assert len(scalars[tag]) == 20, tag
    assert scalars["rewards/accuracies"][-1] == (20, 1.0)


def test_ipo_uses_per_token_average_and_online_reference_matches_precomputed():
    pairs = _pairs(4)
    mk = lambda **kw: DPOTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)),  # noqa: E731
                                 DPOConfig(batch_size=4, max_length=12, beta=0.5, loss_type="ipo", progress=False,
                                           optim=_const_optim(3e-3), **kw), mesh=sharding.make_mesh())
    pre, online = mk(), mk(online_reference=True)
    c = pre.make_batch(pairs)["ref_chosen_logps"]
    a, b = pre.fit(pairs, 3), online.fit(pairs, 3)
    # Step 1: policy == reference, so the IPO loss is (1 / (2 beta))^2 = 1; the logged log-probs are summed
    # over the 5 chosen tokens (TRL's metrics), while the loss sees per-token averages.
    assert a[0]["train/loss"] == pytest.approx(1.0, rel=1e-5)
    assert a[0]["logps/chosen"] == pytest.approx(float(np.mean(c)), rel=1e-5) and np.all(c < -5 * np.log(32) * 0.5)
    for k in ("train/loss", "rewards/margins", "logps/chosen"):
        np.testing.assert_allclose([r[k] for r in a], [r[k] for r in b], rtol=1e-4, atol=1e-6)


def test_reward_model_learns_a_simple_preference():
    rng = np.random.default_rng(1)

    def make(n):
        out = []
        for _ in range(n):
            rejected = rng.integers(4, 32, 5).tolist()
            chosen = list(rejected)
            chosen[rng.integers(0, 5)] = 3  # the preferred completions contain token 3
            out.append(PreferencePair(rng.integers(4, 32, 4).tolist(), chosen, rejected))
        return out

    train, held_out = make(32), make(16)
    trainer = RewardTrainer(models.RewardModel(CFG, rngs=nnx.Rngs(1)),
                            RewardConfig(batch_size=8, max_length=12, progress=False, optim=_const_optim(3e-3)),
                            mesh=sharding.make_mesh())
    rows = trainer.fit(train, 40)
    assert rows[-1]["accuracy"] == 1.0
    sc = trainer.score([p.prompt for p in held_out], [p.chosen for p in held_out])
    sr = trainer.score([p.prompt for p in held_out], [p.rejected for p in held_out])
    assert np.mean(sc > sr) >= 0.9


def test_rl_raises_mean_toy_reward():
    def frac_of_token_3(prompt_indices, completions):
        assert len(prompt_indices) == len(completions) == 16
        return [sum(t == 3 for t in c) / len(c) for c in completions]

    config = RLConfig(batch_size=16, prompts_per_step=4, num_generations=4, max_prompt_length=4, max_new_tokens=6,
                      beta=0.01, ppo_epochs=2, progress=False, optim=_const_optim(1e-2))
    trainer = RLTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), config, execution_reward=frac_of_token_3,
                        mesh=sharding.make_mesh())
    rng = np.random.default_rng(0)
    rows = trainer.fit([rng.integers(4, 32, 3).tolist() for _ in range(8)], 12)
    first, last = np.mean([r["reward"] for r in rows[:2]]), np.mean([r["reward"] for r in rows[-2:]])
    assert last > first + 0.3, (first, last)
    for k in ("reward_std", "kl", "clip_ratio/region_mean", "entropy", "completions/mean_length",
              "frac_reward_zero_std"):
        assert np.isfinite(rows[-1][k]), k
    assert rows[-1]["kl"] > 0 and rows[-1]["completions/mean_length"] == 6.0


@functools.lru_cache(maxsize=None)
def _dpo_rows(mesh_shape):
    mesh = sharding.make_mesh(devices=jax.devices()[:1]) if mesh_shape is None else sharding.make_mesh(**dict(mesh_shape))
    cfg = DPOConfig(batch_size=16, max_length=12, beta=0.5, progress=False, optim=_const_optim(5e-3, grad_accum_steps=2))
    return DPOTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), cfg, mesh=mesh).fit(_pairs(16), 3)


@pytest.mark.parametrize("shape", [(("data", 8),), (("data", 2), ("fsdp", 2), ("tensor", 2))])
def test_dpo_metrics_same_on_one_and_eight_devices(shape):
    one, many = _dpo_rows(None), _dpo_rows(shape)
    for k in ("train/loss", "train/grad_norm", "rewards/margins", "logps/chosen", "logits/chosen"):
        np.testing.assert_allclose([r[k] for r in one], [r[k] for r in many], rtol=2e-4, atol=1e-5, err_msg=k)
    # (step 1 has policy == reference, where accuracy compares rounding noise; later steps must agree)
    assert [r["rewards/accuracies"] for r in one[1:]] == [r["rewards/accuracies"] for r in many[1:]]


def test_grad_accumulation_matches_one_big_batch_and_nonfinite_step_is_skipped():
    data = [PromptCompletion([1, 2, 3][: 1 + i % 3], [4 + i % 5, 5, 6 + i % 7][: 1 + i % 3]) for i in range(8)]

    def trainer(accum):
        return SFTTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)),
                          SFTConfig(batch_size=8, max_length=8, progress=False,
                                    optim=_const_optim(1e-2, grad_accum_steps=accum)), mesh=sharding.make_mesh())

    a, b = trainer(1), trainer(4)
    ra, rb = a.fit(data, 2), b.fit(data, 2)
    np.testing.assert_allclose([r["train/loss"] for r in ra], [r["train/loss"] for r in rb], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)

    # A batch whose loss is non-finite (normaliser 0 -> inf/nan) is skipped, counted, and leaves params intact.
    before = [np.asarray(x).copy() for x in jax.tree.leaves(a.state.params)]
    batch = a.make_batch(data)
    batch["normalizer"][:] = 0.0
    m = jax.device_get(a.train_step(batch))
    assert not np.isfinite(m["train/loss"]) and m["train/skipped_steps"] == 1 and a.step == 3
    for x, y in zip(before, jax.tree.leaves(a.state.params)):
        np.testing.assert_array_equal(x, np.asarray(y))
    row = a.fit(data, 1)[-1]  # training continues normally afterwards
    assert np.isfinite(row["train/loss"]) and row["train/skipped_steps"] == 1


def _script(workdir, out, delay):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, os.path.join(HERE, "resume_run.py"), str(workdir), str(out), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_resume_after_kill_9_gives_same_final_metrics(tmp_path):
    ref = _script(tmp_path / "ref", tmp_path / "ref.json", 0.0)
    victim = _script(tmp_path / "run", tmp_path / "run.json", 0.2)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a mid-run checkpoint exists
        steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if steps and max(steps) >= 2:
            break
        assert victim.poll() is None, victim.stdout.read()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "run.json").exists()
    assert ref.wait(timeout=180) == 0, ref.stdout.read()

    again = _script(tmp_path / "run", tmp_path / "run.json", 0.0)
    out = again.communicate(timeout=180)[0]
    assert again.returncode == 0, out
    resumed = int(out.split("resumed_from_step=")[1].split()[0])
    assert 2 <= resumed < 12
    ref_rows = json.loads((tmp_path / "ref.json").read_text())
    run_rows = json.loads((tmp_path / "run.json").read_text())
    assert [r["step"] for r in run_rows] == list(range(1, 13)) == [r["step"] for r in ref_rows]
    for a, b in zip(ref_rows, run_rows):
        for k in a:
            if not k.startswith("perf/"):
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), (a["step"], k)


def test_bf16_compute_fp32_master_weights_mfu_and_repeated_fit():
    cfg = CFG.replace(dtype="bfloat16", param_dtype="bfloat16")
    pairs = _pairs(8)
    trainer = DPOTrainer(models.CausalLM(cfg, rngs=nnx.Rngs(0)),
                         DPOConfig(batch_size=8, max_length=12, beta=0.5, progress=False, peak_flops=1e12,
                                   optim=_const_optim(5e-3)), mesh=sharding.make_mesh())
    float_leaves = [x for x in jax.tree.leaves((trainer.state.params, trainer.state.opt_state))
                    if jnp.issubdtype(x.dtype, jnp.floating)]
    assert all(x.dtype == jnp.float32 for x in float_leaves)
    first = trainer.fit(pairs, 10)
    assert first[-1]["rewards/accuracies"] == 1.0
    # perf/mfu = step FLOPs (6 N x 2 x T per pair) / time / (peak x devices); tokens/s counts non-pad tokens.
    # Both counted here from the model and the pairs, not from the trainer's counters.
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(models.CausalLM(cfg, rngs=nnx.Rngs(0)), nnx.Param)))
    assert n_params == (32 * 32 * 2 + 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32)
    tokens = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    assert trainer.count_tokens(trainer.make_batch(pairs)) == tokens
    flops = 6.0 * n_params * 2 * 12 * 8
    r = first[-1]
    assert r["perf/mfu"] * 1e12 * jax.device_count() / r["perf/tokens_per_sec"] == pytest.approx(flops / tokens, rel=1e-4)
    # Calling fit again in the same process trains further (it is not mistaken for a resume).
    second = trainer.fit(pairs, 3)
    assert [r["step"] for r in second] == [11, 12, 13] and trainer.step == 13


def test_rl_resume_after_crash_matches_uninterrupted_run(tmp_path):
    config = RLConfig(batch_size=8, prompts_per_step=2, num_generations=4, max_prompt_length=4, max_new_tokens=4,
                      beta=0.05, ppo_epochs=1, save_every=1, progress=False, optim=_const_optim(1e-2))
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12], [13]]

    def reward(crash_on_call=None):
        calls = []

        def fn(idx, comps):
            calls.append(1)
            if len(calls) == crash_on_call:
                raise RuntimeError("simulated crash")
            return [sum(t == 3 for t in c) / len(c) + 0.1 * float(i) for i, c in zip(idx, comps)]
        return fn

    def make(workdir, fn):
        return RLTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), config, execution_reward=fn,
                         mesh=sharding.make_mesh(), workdir=workdir)

    full = make(str(tmp_path / "full"), reward()).fit(prompts, 4)
    crashing = make(str(tmp_path / "run"), reward(crash_on_call=3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit(prompts, 4)
    crashing.close()
    resumed = make(str(tmp_path / "run"), reward())
    assert resumed.step == 2  # two iterations (one update each) were checkpointed before the crash
    rows = resumed.fit(prompts, 4)
    resumed.close()
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for a, b in zip(full, rows):
        for k in ("reward", "kl", "clip_ratio/region_mean", "entropy", "train/loss", "train/grad_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (a["step"], k)


def test_dpo_sft_weight_adds_token_mean_nll_of_chosen():
    pairs = _pairs(4)  # every chosen completion has 5 tokens
    trainer = DPOTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)),
                         DPOConfig(batch_size=4, max_length=12, beta=0.5, sft_weight=0.7, progress=False,
                                   optim=_const_optim(1e-3)), mesh=sharding.make_mesh())
    row = trainer.fit(pairs, 1)[0]
    assert row["nll_loss"] == pytest.approx(-row["logps/chosen"] / 5, rel=1e-5)
    assert row["train/loss"] == pytest.approx(np.log(2) + 0.7 * row["nll_loss"], rel=1e-5)


def test_length_grouped_order_is_a_permutation_per_epoch_pure_in_the_position_and_groups_lengths():
    from ieta_jax.trainers.batching import length_grouped_indices, stream_indices

    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(96) < 0.2, rng.integers(200, 380, 96), rng.integers(20, 120, 96))
    bs, groups = 8, 4
    order = length_grouped_indices(lengths, 0, 96, bs, seed=3, group_batches=groups)
    # Every group of 4 batches (32 stream positions, here one third of an epoch) holds the same examples as the
    # plain stream; over the epoch each example is seen exactly once.
    plain = stream_indices(96, 0, 96, 3)
    for g in range(3):
        assert sorted(order[g * 32:(g + 1) * 32]) == sorted(plain[g * 32:(g + 1) * 32])
    assert sorted(order) == list(range(96))
    # The batch at a position does not depend on how the stream was requested (exact resume).
    again = np.concatenate([length_grouped_indices(lengths, k * bs, bs, bs, seed=3, group_batches=groups)
                            for k in range(12)])
    np.testing.assert_array_equal(order, again)
    # Within a group the batches split the sorted lengths: no batch's length range overlaps another's.
    for g in range(3):
        spans = sorted((lengths[order[g * 32 + b * bs:g * 32 + (b + 1) * bs]].min(),
                        lengths[order[g * 32 + b * bs:g * 32 + (b + 1) * bs]].max()) for b in range(groups))
        assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="multiple of batch_size"):
        length_grouped_indices(lengths, 3, bs, bs, seed=3)


def test_sft_grouped_and_trimmed_batches_train_like_full_length_batches():
    from ieta_jax.trainers.batching import trim_padding

    rng = np.random.default_rng(1)
    data = [PromptCompletion(rng.integers(1, 32, int(n)).tolist(), rng.integers(1, 32, 3).tolist())
            for n in rng.choice([2, 3, 20, 40], 16)]

    def trainer(group):
        return SFTTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)),
                          SFTConfig(batch_size=4, max_length=128, progress=False, group_by_length=group,
                                    optim=_const_optim(1e-2)), mesh=sharding.make_mesh())

    grouped, full = trainer(True), trainer(False)
    idx = grouped._batch_indices(grouped._prepare(data), 0, 4)
    batch = grouped.make_batch(data, idx)
    lengths = grouped._prepare(data)["attention_mask"].sum(axis=1)[idx]
    assert batch["input_ids"].shape[1] == min(128, -(-int(lengths.max()) // 64) * 64)
    # The same examples, trimmed or not: the same loss and the same update (trimming drops padding only).
    m_grouped = jax.device_get(grouped.train_step(batch))
    m_full = jax.device_get(full.train_step(full.make_batch(data, idx)))
    np.testing.assert_allclose(m_grouped["train/loss"], m_full["train/loss"], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(grouped.state.params), jax.tree.leaves(full.state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    short = {"attention_mask": np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]), "x": np.zeros((2, 5)), "n": np.ones(2)}
    cut = trim_padding(short, 2)
    assert cut["attention_mask"].shape == (2, 2) and cut["x"].shape == (2, 2) and cut["n"].shape == (2,)
    rows = grouped.fit(data, 8)  # a whole grouped fit runs (several shapes) and learns
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]


def test_dpo_scores_the_reference_only_for_the_pairs_its_steps_draw():
    pairs = _pairs(40, seed=2)
    mk = lambda **kw: DPOTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)),  # noqa: E731
                                 DPOConfig(batch_size=4, max_length=12, beta=0.5, progress=False,
                                           optim=_const_optim(3e-3), **kw), mesh=sharding.make_mesh())
    pre, online = mk(), mk(online_reference=True)
    full_c, full_r = pre.reference_logps(pre._prepare(pairs))
    a, b = pre.fit(pairs, 3), online.fit(pairs, 3)
    for k in ("train/loss", "rewards/margins", "logps/chosen"):  # the same training as scoring every batch online
        np.testing.assert_allclose([r[k] for r in a], [r[k] for r in b], rtol=1e-4, atol=1e-6)
    arrays = pre._prepare(pairs)
    used = np.unique(np.concatenate([pre._batch_indices(arrays, k * 4, 4) for k in range(3)]))
    stored_c = np.asarray(pre.meta["fit"]["ref_chosen_logps"])
    stored_r = np.asarray(pre.meta["fit"]["ref_rejected_logps"])
    assert 0 < len(used) <= 12
    np.testing.assert_allclose(stored_c[used], full_c[used], rtol=1e-5)
    np.testing.assert_allclose(stored_r[used], full_r[used], rtol=1e-5)
    assert np.all(np.delete(stored_c, used) == 0)
