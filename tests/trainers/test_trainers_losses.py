"""Loss functions against independent numpy formulas, and gradient directions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieta_jax import losses

RNG = np.random.default_rng(0)
PC, PR, RC, RR = (RNG.normal(-20, 3, size=16).astype(np.float32) for _ in range(4))


def _np_logsig(x):
    return -np.logaddexp(0.0, -x)


def _np_dpo(pc, pr, rc, rr, beta, loss_type, e):
    h = (pc.astype(np.float64) - pr) - (rc - rr)
    if loss_type == "sigmoid":
        per = -(1 - e) * _np_logsig(beta * h) - e * _np_logsig(-beta * h)
    elif loss_type == "ipo":
        per = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        per = np.maximum(0.0, 1 - beta * h)
    elif loss_type == "robust":
        per = (-(1 - e) * _np_logsig(beta * h) + e * _np_logsig(-beta * h)) / (1 - 2 * e)
    return per.mean()


@pytest.mark.parametrize("loss_type", losses.DPO_LOSS_TYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_dpo_loss_matches_numpy(loss_type, label_smoothing):
    beta = 0.3
    loss, m = losses.dpo_loss(*map(jnp.asarray, (PC, PR, RC, RR)), beta=beta, loss_type=loss_type,
                              label_smoothing=label_smoothing)
    np.testing.assert_allclose(float(loss), _np_dpo(PC, PR, RC, RR, beta, loss_type, label_smoothing), rtol=1e-5)
    cr, rr_ = beta * (PC - RC), beta * (PR - RR)
    np.testing.assert_allclose(float(m["rewards/chosen"]), cr.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["rewards/rejected"]), rr_.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["rewards/margins"]), (cr - rr_).mean(), rtol=1e-4, atol=1e-5)
    assert float(m["rewards/accuracies"]) == pytest.approx((cr > rr_).mean())
    np.testing.assert_allclose(float(m["logps/chosen"]), PC.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(m["logps/rejected"]), PR.mean(), rtol=1e-6)


def test_plain_dpo_value_at_zero_margin_is_log2():
    z = jnp.zeros(4)
    loss, m = losses.dpo_loss(z, z, z, z, beta=0.1)
    assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)
    assert float(m["rewards/accuracies"]) == 0.0


def test_ipo_averages_log_ratios_per_token_but_reports_summed_metrics():
    nc, nr = np.arange(1, 17, dtype=np.float32), np.full(16, 4.0, np.float32)
    beta = 0.3
    loss, m = losses.dpo_loss(*map(jnp.asarray, (PC, PR, RC, RR)), beta=beta, loss_type="ipo",
                              chosen_lengths=jnp.asarray(nc), rejected_lengths=jnp.asarray(nr))
    h = (PC.astype(np.float64) - RC) / nc - (PR.astype(np.float64) - RR) / nr
    np.testing.assert_allclose(float(loss), ((h - 1 / (2 * beta)) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["rewards/chosen"]), (beta * (PC - RC)).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["logps/chosen"]), PC.mean(), rtol=1e-6)


def test_dpo_rejects_bad_arguments():
    z = jnp.zeros(2)
    with pytest.raises(ValueError, match="loss_type"):
        losses.dpo_loss(z, z, z, z, beta=0.1, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.dpo_loss(z, z, z, z, beta=0.1, label_smoothing=0.5)


@pytest.mark.parametrize("loss_type", losses.DPO_LOSS_TYPES)
def test_dpo_gradient_raises_chosen_and_lowers_rejected(loss_type):
    # At h = 0 every loss type wants a larger margin: d loss / d chosen < 0, d loss / d rejected > 0.
    z = jnp.zeros(3)
    label_smoothing = 0.1 if loss_type in ("sigmoid", "robust") else 0.0
    g = jax.grad(lambda pc, pr: losses.dpo_loss(pc, pr, z, z, beta=0.5, loss_type=loss_type,
                                                label_smoothing=label_smoothing)[0], argnums=(0, 1))(z, z)
    assert np.all(np.asarray(g[0]) < 0) and np.all(np.asarray(g[1]) > 0)


def test_conservative_dpo_pushes_back_past_its_target():
    # cDPO with e=0.2 has its optimum at s(beta h) = 0.8; beyond it the gradient reverses.
    beta, e = 1.0, 0.2
    h_star = np.log(0.8 / 0.2)
    z = jnp.zeros(1)
    for h, sign in ((h_star - 0.5, -1), (h_star + 0.5, 1)):
        g = jax.grad(lambda pc: losses.dpo_loss(pc, z, z, z, beta=beta, label_smoothing=e)[0])(jnp.array([h]))
        assert np.sign(float(g[0])) == sign


def test_reward_loss_matches_numpy():
    rc = RNG.normal(size=10).astype(np.float32)
    rr = RNG.normal(size=10).astype(np.float32)
    margin = RNG.uniform(0, 1, size=10).astype(np.float32)
    loss, m = losses.reward_loss(jnp.asarray(rc), jnp.asarray(rr), margin=jnp.asarray(margin), center_coef=0.01)
    ref = -_np_logsig(rc.astype(np.float64) - rr - margin).mean() + 0.01 * np.mean((rc.astype(np.float64) + rr) ** 2)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    both = np.concatenate([rc, rr])
    assert float(m["accuracy"]) == pytest.approx((rc > rr).mean())
    np.testing.assert_allclose(float(m["margin"]), (rc - rr).mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([float(m["mean_reward"]), float(m["min_reward"]), float(m["max_reward"])],
                               [both.mean(), both.min(), both.max()], rtol=1e-5, atol=1e-6)


def test_reward_loss_gradient_direction():
    g = jax.grad(lambda c, r: losses.reward_loss(c, r)[0], argnums=(0, 1))(jnp.zeros(2), jnp.zeros(2))
    assert np.all(np.asarray(g[0]) < 0) and np.all(np.asarray(g[1]) > 0)


def _np_nanstd(x, axis=None):
    x = np.asarray(x, np.float64)
    n = (~np.isnan(x)).sum(axis=axis, keepdims=True)
    mean = np.nanmean(x, axis=axis, keepdims=True)
    return np.sqrt(np.nanmean((x - mean) ** 2, axis=axis, keepdims=True) * n / (n - 1))


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_group_relative_advantages_match_numpy(scale_rewards):
    r = np.array([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, -1.0, 3.0, np.nan, 1.0], np.float32)
    adv, m = losses.group_relative_advantages(jnp.asarray(r), 4, scale_rewards=scale_rewards)
    g = r.reshape(3, 4).astype(np.float64)
    std = _np_nanstd(g, axis=1) if scale_rewards != "batch" else np.full((3, 1), _np_nanstd(r))
    ref = g - np.nanmean(g, axis=1, keepdims=True)
    if scale_rewards != "none":
        ref = ref / (std + 1e-4)
    ref = np.nan_to_num(ref, nan=0.0).reshape(-1)
    np.testing.assert_allclose(np.asarray(adv), ref, rtol=1e-5, atol=1e-6)
    assert np.asarray(adv)[10] == 0.0  # the unscorable completion carries no signal
    assert float(m["frac_reward_zero_std"]) == pytest.approx(1 / 3 if scale_rewards != "batch" else 0.0)
    np.testing.assert_allclose(float(m["reward_std"]), _np_nanstd(r)[0], rtol=1e-5)  # std over the whole batch
    np.testing.assert_allclose(float(m["reward"]), np.nanmean(r), rtol=1e-6)
    with pytest.raises(ValueError, match="group_size"):
        losses.group_relative_advantages(jnp.asarray(r), 5)
    with pytest.raises(ValueError, match="scale_rewards"):
        losses.group_relative_advantages(jnp.asarray(r), 4, scale_rewards="std")


def test_k3_kl_matches_numpy_and_is_nonnegative():
    lp = RNG.normal(-2, 1, size=(4, 6)).astype(np.float32)
    ref = RNG.normal(-2, 1, size=(4, 6)).astype(np.float32)
    out = np.asarray(losses.k3_kl(jnp.asarray(lp), jnp.asarray(ref)))
    d = ref.astype(np.float64) - lp
    np.testing.assert_allclose(out, np.exp(d) - d - 1, rtol=1e-5, atol=1e-6)
    assert out.min() >= 0
    assert float(losses.k3_kl(jnp.ones(3), jnp.ones(3)).max()) == 0.0


def test_token_entropy_matches_numpy():
    logits = RNG.normal(size=(3, 5, 11)).astype(np.float32)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(losses.token_entropy(jnp.asarray(logits))),
                               -(p * np.log(p)).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("loss_type", losses.RL_LOSS_TYPES)
@pytest.mark.parametrize("correction", [True, False])
def test_grpo_loss_matches_numpy(loss_type, correction):
    B, T, eps, eps_high, beta = 4, 5, 0.2, 0.28, 0.05
    lp = RNG.normal(-1.5, 0.3, size=(B, T)).astype(np.float32)
    old = lp + RNG.normal(0, 0.3, size=(B, T)).astype(np.float32)
    ref = lp + RNG.normal(0, 0.3, size=(B, T)).astype(np.float32)
    adv = np.array([1.0, -0.5, 2.0, -1.0], np.float32)
    mask = (RNG.uniform(size=(B, T)) > 0.3).astype(np.float32)
    mask[:, 0] = 1.0
    loss, m = losses.grpo_loss(*map(jnp.asarray, (lp, old, ref, adv, mask)), clip_eps=eps, clip_eps_high=eps_high,
                               beta=beta, loss_type=loss_type, normalizer=jnp.float32(37.0),
                               max_completion_length=8, kl_importance_correction=correction)
    ratio = np.exp(lp.astype(np.float64) - old)
    a = adv[:, None]
    surr = -np.minimum(ratio * a, np.clip(ratio, 1 - eps, 1 + eps_high) * a)
    d = ref.astype(np.float64) - lp
    kl = (np.exp(d) - d - 1) * (ratio if correction else 1.0)
    per = (surr + beta * kl) * mask
    expect = {"grpo": (per.sum(1) / mask.sum(1)).mean(), "bnpo": per.sum() / mask.sum(),
              "dr_grpo": per.sum() / (B * 8), "dapo": per.sum() / 37.0}[loss_type]
    n = mask.sum()
    np.testing.assert_allclose(float(loss), expect, rtol=1e-5)
    np.testing.assert_allclose(float(m["kl"]), (kl * mask).sum() / n, rtol=1e-5)
    low = (ratio < 1 - eps) & (a < 0)
    high = (ratio > 1 + eps_high) & (a > 0)
    np.testing.assert_allclose(float(m["clip_ratio/low_mean"]), (low * mask).sum() / n, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_ratio/high_mean"]), (high * mask).sum() / n, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_ratio/region_mean"]), ((low | high) * mask).sum() / n, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_ratio/low_min"]), ((low * mask).sum(1) / mask.sum(1)).min(), rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_ratio/high_max"]), ((high * mask).sum(1) / mask.sum(1)).max(), rtol=1e-6)


def test_grpo_gradient_follows_advantage_sign_and_clips():
    z = jnp.zeros((2, 3))
    mask = jnp.ones((2, 3))
    adv = jnp.array([1.0, -1.0])
    g = jax.grad(lambda lp: losses.grpo_loss(lp, z, None, adv, mask, clip_eps=0.2)[0])(z)
    assert np.all(np.asarray(g[0]) < 0) and np.all(np.asarray(g[1]) > 0)
    # Ratio already above 1 + eps with a positive advantage: clipped, no gradient; clip_eps_high moves the edge.
    lp = jnp.full((2, 3), 0.2)
    g = jax.grad(lambda lp: losses.grpo_loss(lp, z, None, jnp.array([1.0, 1.0]), mask, clip_eps=0.2)[0])(lp)
    assert np.all(np.asarray(g) == 0)
    g = jax.grad(lambda lp: losses.grpo_loss(lp, z, None, jnp.array([1.0, 1.0]), mask, clip_eps=0.2,
                                             clip_eps_high=0.3)[0])(lp)
    assert np.all(np.asarray(g) < 0)
    # The KL term pulls log-probs back toward the reference.
    g = jax.grad(lambda lp: losses.grpo_loss(lp, lp, z, jnp.zeros(2), mask, clip_eps=0.2, beta=1.0)[0])(lp)
    assert np.all(np.asarray(g) > 0)


def test_masked_cross_entropy_matches_numpy():
    logits = RNG.normal(size=(2, 4, 7)).astype(np.float32)
    targets = RNG.integers(0, 7, size=(2, 4))
    mask = np.array([[0, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    out = losses.masked_mean_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    nll = lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(out), (nll * mask).sum() / mask.sum(), rtol=1e-5)


def test_token_logps_value_and_gradient_match_log_softmax():
    """The select-and-sum pick equals log_softmax[target], and so does its gradient (softmax - one-hot)."""
    logits = RNG.normal(0, 3, size=(2, 5, 13)).astype(np.float32)
    targets = RNG.integers(0, 13, size=(2, 5))
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x).sum(-1))
    want = np.take_along_axis(x, targets[..., None], -1)[..., 0] - lse
    np.testing.assert_allclose(np.asarray(losses.token_logps(jnp.asarray(logits), jnp.asarray(targets))), want,
                               rtol=1e-5, atol=1e-5)
    w = RNG.normal(size=(2, 5))
    grad = jax.grad(lambda z: (losses.token_logps(z, jnp.asarray(targets)) * w).sum())(jnp.asarray(logits))
    soft = np.exp(x - lse[..., None])
    onehot = np.eye(13)[targets]
    np.testing.assert_allclose(np.asarray(grad), (onehot - soft) * w[..., None], rtol=1e-4, atol=1e-5)
