"""Group-relative RL over multi-turn episodes (``RLTrainer(episode_rollout=...)``) on a tiny model: turn-2
sequences when turn 1 fails, advantages of the episodes' final (or per-turn) rewards against an independent
formula, every turn's completion tokens trained, padding rows inert, and an exact resume."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from ieta_jax import models, optim, sampling, sharding
from ieta_jax.trainers import RLConfig, RLTrainer
from ieta_jax.trainers.rl import EpisodeRollout

CFG = models.ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12], [13]]
FEEDBACK = 2  # the "feedback" token a repair prompt appends after the failing program
GOOD = 3      # a program "passes" when its completion holds this token


def config(**kw):
    base = dict(batch_size=4, prompts_per_step=2, num_generations=4, max_prompt_length=12, max_new_tokens=4,
                beta=0.05, max_turns=2, progress=False,
                optim=optim.OptimConfig(learning_rate=1e-2, total_steps=100, schedule="constant"))
    return RLConfig(**{**base, **kw})


def reward_of(completion):
    return sum(t == GOOD for t in completion) / len(completion)


def sampled_episodes(prompts, G, crash_on_call=None, fixes=1):
    """An episode rollout that samples from the trainer's model: turn 1 from the prompt; a program without GOOD
    fails, and its repair prompt is prompt + program + FEEDBACK (``fixes`` samples of it). Rewards: the fraction
    of GOOD tokens."""
    calls = []

    def rollout(model, prompt_indices, key):
        calls.append(1)
        if len(calls) == crash_on_call:
            raise RuntimeError("simulated crash")
        ps = [prompts[int(i)] for i in prompt_indices]
        k1, k2 = jax.random.split(key)
        out = sampling.generate(model, ps, max_new_tokens=4, rng=k1, num_samples=G, pad_token_id=0)
        first = [np.asarray(out.tokens)[e, :int(out.lengths[e])].tolist() for e in range(len(ps) * G)]
        seq_prompts = [ps[e // G] for e in range(len(first))]
        eps, turns = list(range(len(first))), [1] * len(first)
        failing = [e for e, c in enumerate(first) if GOOD not in c]
        completions = list(first)
        if failing:
            repair = [ps[e // G] + first[e] + [FEEDBACK] for e in failing]
            out2 = sampling.generate(model, repair, max_new_tokens=4, rng=k2, num_samples=fixes, pad_token_id=0)
            completions += [np.asarray(out2.tokens)[j, :int(out2.lengths[j])].tolist()
                            for j in range(len(failing) * fixes)]
            seq_prompts += [p for p in repair for _ in range(fixes)]
            eps += [e for e in failing for _ in range(fixes)]
            turns += [2] * len(failing) * fixes
        fix = [0] * len(first) + [f for _ in failing for f in range(fixes)]
        return EpisodeRollout(seq_prompts, completions, np.asarray(eps), np.asarray(turns),
                              np.asarray([reward_of(c) for c in completions], np.float32), np.asarray(fix))

    return rollout


def group_advantages(rewards, G, eps=1e-4):
    """TRL's group-relative advantages, written out: (r - group mean) / (unbiased group std + eps)."""
    r = np.asarray(rewards, np.float64).reshape(-1, G)
    return ((r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + eps)).reshape(-1)


def scripted(execution):
    """Two prompts x G=2 episodes; episodes 0 and 3 fail turn 1 and get a turn-2 sequence (listed first)."""
    return EpisodeRollout(
        prompts=[[5, 6, 7, 20, 21, FEEDBACK], [8, 9, 22, FEEDBACK], [5, 6, 7], [5, 6, 7], [8, 9], [8, 9]],
        completions=[[3, 3, 1], [3, 1], [20, 21], [3, 1], [3, 3, 3, 1], [22]],
        episodes=np.asarray([0, 3, 0, 1, 2, 3]), turns=np.asarray([2, 2, 1, 1, 1, 1]),
        execution=np.asarray(execution, np.float32))


def make(cfg, rollout=None, workdir=None):
    return RLTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), cfg, episode_rollout=rollout or (lambda *a: None),
                     mesh=sharding.make_mesh(), workdir=workdir)


@pytest.mark.parametrize("turn_rewards", [False, True])
def test_episode_batch_rows_masks_and_advantages(turn_rewards):
    cfg = config(num_generations=2, turn_rewards=turn_rewards, loss_type="grpo")
    trainer = make(cfg)
    execution = [1.0, 0.5, -0.5, 0.0, 1.0, -1.0]  # per sequence (its own program)
    batch, metrics = trainer.build_episode_rollout(2, scripted(execution))
    P, T = cfg.max_prompt_length, cfg.max_new_tokens
    assert batch["input_ids"].shape == (cfg.rollout_rows, P + T) == (8, 16)
    ep = scripted(execution)
    for r, (p, c) in enumerate(zip(ep.prompts, ep.completions)):  # left-padded prompt, completion, scored tokens
        assert batch["input_ids"][r, P - len(p):P].tolist() == p and batch["input_ids"][r, P:P + len(c)].tolist() == c
        assert batch["loss_mask"][r].tolist() == [0.0] * P + [1.0] * len(c) + [0.0] * (T - len(c))
        assert batch["attention_mask"][r].tolist() == [0] * (P - len(p)) + [1] * (len(p) + len(c)) + [0] * (T - len(c))
    assert not batch["loss_mask"][6:].any() and not batch["advantages"][6:].any()  # padding rows: inert
    assert (batch["input_ids"][6:] == batch["input_ids"][5]).all()  # ... copies of the shortest real row
    # The episodes' rewards after each turn: turn 1 its own; turn 2 the repair's where there is one.
    after_1 = [-0.5, 0.0, 1.0, -1.0]
    final = [1.0, 0.0, 1.0, 0.5]
    adv_final, adv_1 = group_advantages(final, 2), group_advantages(after_1, 2)
    seq_eps, seq_turns = ep.episodes, ep.turns
    want = [adv_final[e] if not turn_rewards or t == 2 else adv_1[e] for e, t in zip(seq_eps, seq_turns)]
    np.testing.assert_allclose(batch["advantages"][:6], want, rtol=1e-5, atol=1e-6)
    assert metrics["reward"] == pytest.approx(np.mean(final))
    assert metrics["episodes/mean_turns"] == 6 / 4
    assert "ref_logps" in batch  # beta != 0


def scripted_fixes(execution):
    """scripted() with repair_fixes=2: episodes 0 and 3 fail turn 1, and each failing program gets fixes 0 and 1."""
    return EpisodeRollout(
        prompts=[[5, 6, 7, 20, 21, FEEDBACK], [8, 9, 22, FEEDBACK], [5, 6, 7], [5, 6, 7], [8, 9], [8, 9],
                 [8, 9, 22, FEEDBACK], [5, 6, 7, 20, 21, FEEDBACK]],
        completions=[[3, 3, 1], [3, 1], [20, 21], [3, 1], [3, 3, 3, 1], [22], [4, 4], [3]],
        episodes=np.asarray([0, 3, 0, 1, 2, 3, 3, 0]), turns=np.asarray([2, 2, 1, 1, 1, 1, 2, 2]),
        execution=np.asarray(execution, np.float32), fixes=np.asarray([0, 0, 0, 0, 0, 0, 1, 1]))


@pytest.mark.parametrize("turn_rewards", [False, True])
def test_repair_fixes_are_a_group_of_their_own(turn_rewards):
    """repair_fixes=2: a failing program's two fixes share one prompt, so each fix's advantage is relative to the
    other (TRL's formula over a group of 2); turn-1 rows keep the episode's advantage, whose chain follows fix 0."""
    cfg = config(num_generations=2, turn_rewards=turn_rewards, repair_fixes=2, loss_type="grpo")
    assert cfg.rollout_rows == 2 * 2 * 3
    trainer = make(cfg)
    execution = [1.0, 0.5, -0.5, 0.0, 1.0, -1.0, -0.25, 0.0]
    batch, metrics = trainer.build_episode_rollout(2, scripted_fixes(execution))
    assert batch["input_ids"].shape[0] == 12 and not batch["loss_mask"][8:].any()
    after_1, final = [-0.5, 0.0, 1.0, -1.0], [1.0, 0.0, 1.0, 0.5]   # fix 1's rewards are in no episode's chain
    turn1 = (group_advantages(after_1, 2) if turn_rewards else group_advantages(final, 2))[[0, 1, 2, 3]]
    episode_0_fixes, episode_3_fixes = group_advantages([1.0, 0.0], 2), group_advantages([0.5, -0.25], 2)
    want = [episode_0_fixes[0], episode_3_fixes[0], turn1[0], turn1[1], turn1[2], turn1[3], episode_3_fixes[1],
            episode_0_fixes[1]]
    np.testing.assert_allclose(batch["advantages"][:8], want, rtol=1e-5, atol=1e-6)
    assert metrics["reward"] == pytest.approx(np.mean(final))
    assert metrics["episodes/repair_reward"] == pytest.approx(np.mean([1.0, 0.5, -0.25, 0.0]))
    assert metrics["episodes/repair_frac_reward_zero_std"] == 0.0


def test_episode_rollouts_with_missing_or_extra_fixes_are_refused():
    trainer = make(config(num_generations=2, repair_fixes=2))
    ep = scripted_fixes([0.0] * 8)
    bad = [("missing fix", dict(episodes=ep.episodes[:7], turns=ep.turns[:7], fixes=ep.fixes[:7],
                                prompts=ep.prompts[:7], completions=ep.completions[:7], execution=ep.execution[:7]),
            r"episode 0 turn 2 has fixes \[0\]; expected fixes 0 \.\. 1"),
           ("a fix at turn 1", dict(fixes=np.asarray([0, 0, 1, 0, 0, 0, 1, 1])), r"episode 0 turn 1 has fixes"),
           ("a repeated fix", dict(fixes=np.asarray([0, 0, 0, 0, 0, 0, 0, 1])), r"episode 3 turn 2 has fixes \[0, 0\]")]
    for what, change, match in bad:
        with pytest.raises(ValueError, match=match):
            trainer.build_episode_rollout(2, EpisodeRollout(**{**ep.__dict__, **change}))
    with pytest.raises(ValueError, match=r"1 \+ \(max_turns - 1\) x repair_fixes = 5 sequences per episode exceed"):
        config(repair_fixes=4)


def test_every_minibatch_gets_real_rows_and_grpo_averages_real_sequences():
    cfg = config(num_generations=2, loss_type="grpo", beta=0.0)
    trainer = make(cfg)
    batch, _ = trainer.build_episode_rollout(2, scripted([1.0, 0.5, -0.5, 0.0, 1.0, -1.0]))
    # On-policy the ratio is 1, so grpo's loss is minus the mean advantage over the real sequences (not over 8).
    batch["advantages"] = np.asarray([1, 2, 3, 4, 5, 6, 0, 0], np.float32)
    real = {k: v[:6] for k, v in batch.items()}
    norm = np.full((8,), 1.0, np.float32)
    params, aux = trainer.state.params, trainer.aux
    padded_loss = trainer.loss_fn(params, aux, {**batch, "normalizer": norm}, None)[0]
    real_loss = trainer.loss_fn(params, aux, {**real, "normalizer": norm[:6]}, None)[0]
    assert float(padded_loss) == pytest.approx(-3.5, rel=1e-6) and float(real_loss) == pytest.approx(-3.5, rel=1e-6)
    # Updates: 8 rows / batch 4 = 2 mini-batches, each with 3 of the 6 real rows.
    seen = []
    trainer.train_step = lambda b: seen.append(int((b["loss_mask"].sum(1) > 0).sum())) or {"x": np.float32(0)}
    trainer.update(batch)
    assert seen == [3, 3]


def test_length_grouped_minibatches_are_cut_and_score_like_the_full_rows(monkeypatch):
    """group_by_length: the real rows sorted by length in near-equal runs (padding fills), each mini-batch cut to
    its used columns (left and right padding), and the loss and metrics of every cut mini-batch equal those of
    the same rows at full width (per-token reference log-probs cut with them)."""
    from ieta_jax.trainers import batching, rl

    cfg = config(num_generations=2, group_by_length=True, beta=0.05)
    trainer = make(cfg)
    trainer.length_multiple = 1
    batch, _ = trainer.build_episode_rollout(2, scripted([1.0, 0.5, -0.5, 0.0, 1.0, -1.0]))
    batch["normalizer"] = np.full((8,), 5.0, np.float32)
    row_of = {tuple(r): i for i, r in enumerate(batch["input_ids"][:6].tolist())}
    pairs = []  # (full-width mini-batch, cut mini-batch)
    monkeypatch.setattr(rl, "trim_padding", lambda b, m: pairs.append((b, batching.trim_padding(b, m))) or pairs[-1][1])
    trainer.train_step = lambda b: {"x": np.float32(0)}
    trainer.update(batch)
    assert len(pairs) == 2
    # Sorted by (prompt length, completion length): rows {5, 4, 2} then {3, 1, 0} (see scripted()), one padding
    # row each; cut to max prompt + max completion of each.
    groups = [sorted(row_of[tuple(r)] for r, real in zip(full["input_ids"].tolist(), full["loss_mask"].sum(1) > 0)
                     if real) for full, _ in pairs]
    assert sorted(groups) == [[0, 1, 3], [2, 4, 5]]
    widths = {tuple(g): cut["input_ids"].shape[1] for g, (_, cut) in zip(groups, pairs)}
    assert widths == {(2, 4, 5): 3 + 4, (0, 1, 3): 6 + 3}
    for full, cut in pairs:
        cut_loss, cut_m = trainer.loss_fn(trainer.state.params, trainer.aux, cut, None)
        full_loss, full_m = trainer.loss_fn(trainer.state.params, trainer.aux, full, None)
        assert float(cut_loss) == pytest.approx(float(full_loss), rel=1e-5, abs=1e-6)
        for k in full_m:
            assert float(cut_m[k]) == pytest.approx(float(full_m[k]), rel=1e-4, abs=1e-6), k
        start = 12 - int(full["attention_mask"][:, :12].sum(1).max())  # the longest prompt's first column
        np.testing.assert_array_equal(cut["ref_logps"], full["ref_logps"][:, start:start + cut["input_ids"].shape[1] - 1])


def test_reference_logps_of_length_sorted_cut_chunks_equal_the_full_rows():
    cfg = config(num_generations=2, beta=0.05)
    trainer = make(cfg)
    trainer.length_multiple = 1
    batch, _ = trainer.build_episode_rollout(2, scripted([1.0, 0.5, -0.5, 0.0, 1.0, -1.0]))
    full = np.asarray(trainer._logps_fn(trainer.ref_params, trainer.aux, batch["input_ids"],
                                        batch["attention_mask"], batch["loss_mask"]))
    np.testing.assert_allclose(batch["ref_logps"], full, rtol=1e-5, atol=1e-6)
    assert (batch["ref_logps"][:6] != 0).any(axis=1).all()


def test_gradient_reaches_turn_2_tokens():
    """Only a turn-2 sequence has a nonzero advantage: the update still moves the policy (its tokens are
    trained), and its log-probs move in the advantage's direction."""
    cfg = config(num_generations=2, beta=0.0, batch_size=8)
    trainer = make(cfg)
    ep = scripted([1.0, 0.5, -0.5, 0.0, 1.0, -1.0])
    batch, _ = trainer.build_episode_rollout(2, ep)
    turn2 = np.asarray(ep.turns) == 2
    assert (batch["advantages"][:6][turn2] != 0).all()
    only_turn2 = dict(batch)
    only_turn2["loss_mask"] = batch["loss_mask"] * np.concatenate([turn2, [False, False]])[:, None]
    before = trainer._logps_fn(trainer.state.params, trainer.aux, batch["input_ids"], batch["attention_mask"],
                               batch["loss_mask"])
    trainer.update(only_turn2)
    after = trainer._logps_fn(trainer.state.params, trainer.aux, batch["input_ids"], batch["attention_mask"],
                              batch["loss_mask"])
    delta = (np.asarray(after) - np.asarray(before)).sum(1)[:6]
    assert np.sign(delta[turn2]).tolist() == np.sign(batch["advantages"][:6][turn2]).tolist()


def test_sampled_episodes_train_and_resume_exactly(tmp_path):
    cfg = config(save_every=1)

    def fit(workdir, crash_on_call=None, iterations=3):
        t = make(cfg, sampled_episodes(PROMPTS, cfg.num_generations, crash_on_call), workdir=str(workdir))
        try:
            return t, t.fit(PROMPTS, iterations)
        finally:
            t.close()

    _, full = fit(tmp_path / "full")
    assert all(1.0 < r["episodes/mean_turns"] <= 2.0 for r in full)  # some turn-1 programs failed and were repaired
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "run", crash_on_call=3)
    resumed, rows = fit(tmp_path / "run")
    assert [r["step"] for r in rows] == [4, 8, 12]  # 16 rows / batch 4 = 4 updates per iteration
    assert len(rows) == 3
    for a, b in zip(full, rows):
        for k in ("reward", "kl", "entropy", "episodes/mean_turns", "train/loss", "train/grad_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (a["step"], k)


def test_sampled_episodes_with_two_fixes_train(tmp_path):
    cfg = config(repair_fixes=2, batch_size=4, prompts_per_step=2, num_generations=2)
    t = make(cfg, sampled_episodes(PROMPTS, cfg.num_generations, fixes=2), workdir=str(tmp_path))
    try:
        rows = t.fit(PROMPTS, 2)
    finally:
        t.close()
    assert [r["step"] for r in rows] == [3, 6]  # 2 x 2 x (1 + 2) = 12 rows / batch 4 = 3 updates per iteration
    assert all(1.0 < r["episodes/mean_turns"] <= 2.0 and np.isfinite(r["train/loss"]) for r in rows)
    assert all("episodes/repair_reward" in r for r in rows)


def test_max_turns_needs_an_episode_rollout():
    with pytest.raises(ValueError, match="needs an episode_rollout"):
        RLTrainer(models.CausalLM(CFG, rngs=nnx.Rngs(0)), config(), execution_reward=lambda i, c: [0.0] * len(c),
                  mesh=sharding.make_mesh())


def test_sft_weight_adds_the_nll_of_passing_programs_and_imitations():
    """rlaif.sft_weight: + weight x the temperature-1 NLL of the sequences whose execution reward reaches
    sft_min_reward (NaN never) and of the imitations that fit in the padding rows, over the policy loss's divisor,
    against log-probs computed here from the model's logits; the policy-gradient part is unchanged."""
    ex = [1.0, 0.5, -0.5, 0.0, 1.0, float("nan")]
    # Two padding rows (8 rows, 6 sequences): the first two imitations take them, the third is dropped.
    imitations = [([5, 6, 7, 20, 21, FEEDBACK], [3, 3, 3]), ([8, 9, 22, FEEDBACK], [3]), ([5, 6, 7], [3, 1])]
    rollout = dataclasses.replace(scripted(ex), imitations=imitations)
    kw = dict(num_generations=2, beta=0.0, temperature=0.5)
    plain, sft = make(config(**kw)), make(config(**kw, sft_weight=0.5, sft_min_reward=1.0))
    batch, metrics = sft.build_episode_rollout(2, rollout)
    plain_batch, _ = plain.build_episode_rollout(2, rollout)
    assert "sft_tokens" not in plain_batch and metrics["episodes/imitations"] == 2
    imitated_rows = (batch["sft_tokens"].sum(1) > 0).tolist()
    assert imitated_rows == [True, False, False, False, True, False, True, True]
    np.testing.assert_array_equal(batch["sft_tokens"][[0, 4]], batch["loss_mask"][[0, 4]])
    assert batch["sft_tokens"][6].sum() == 3 and batch["sft_tokens"][7].sum() == 1
    np.testing.assert_array_equal(batch["input_ids"][6, -4:-1], [3, 3, 3])
    assert batch["loss_mask"][6:].sum() == 0 and (batch["advantages"][6:] == 0).all()
    for k in ("input_ids", "attention_mask", "loss_mask", "advantages"):  # the rollout's own rows are the same
        np.testing.assert_array_equal(batch[k][:6], plain_batch[k][:6])
    batch["normalizer"] = plain_batch["normalizer"] = np.full((8,), 7.0, np.float32)
    loss_sft, metrics = sft.loss_fn(sft.state.params, sft.aux, batch, None)
    plain_batch = {**{k: v for k, v in batch.items() if k != "sft_tokens"}, "loss_mask": batch["loss_mask"]}
    loss_plain, _ = plain.loss_fn(plain.state.params, plain.aux, plain_batch, None)
    logits = np.asarray(models.CausalLM(CFG, rngs=nnx.Rngs(0))(batch["input_ids"], batch["attention_mask"]),
                        np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    tok = np.take_along_axis(logp[:, :-1], batch["input_ids"][:, 1:, None].astype(np.int64), -1)[..., 0]
    nll = -(tok * batch["sft_tokens"][:, 1:]).sum() / 7.0
    assert nll > 0
    assert float(metrics["nll_loss"]) == pytest.approx(nll, rel=1e-5)
    assert float(loss_sft) - float(loss_plain) == pytest.approx(0.5 * nll, rel=1e-4)
    # sft_min_turn=2: the passing repair alone of the rollout's own rows (row 0 is a turn-2 sequence, row 4 a
    # turn-1 one).
    repairs_only = make(config(**kw, sft_weight=0.5, sft_min_reward=1.0, sft_min_turn=2))
    assert (repairs_only.build_episode_rollout(2, scripted(ex))[0]["sft_tokens"].sum(1) > 0).tolist() == \
        [True] + [False] * 7
    # On without execution rewards: refused.
    with pytest.raises(ValueError, match="no execution rewards"):
        sft.build_episode_rollout(2, dataclasses.replace(scripted(ex), execution=None))


def test_sampled_episodes_train_with_sft_weight(tmp_path):
    cfg = config(sft_weight=1.0, sft_min_reward=0.25)
    t = make(cfg, sampled_episodes(PROMPTS, cfg.num_generations), workdir=str(tmp_path))
    try:
        rows = t.fit(PROMPTS, 2)
    finally:
        t.close()
    assert all(np.isfinite(r["nll_loss"]) and np.isfinite(r["train/loss"]) for r in rows)
    assert any(r["nll_loss"] > 0 for r in rows)
