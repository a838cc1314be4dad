"""Schedules, the non-finite guard, gradient accumulation and fp32 master weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ieta_jax import optim


def test_warmup_then_cosine_and_linear():
    cos = optim.make_schedule(optim.OptimConfig(learning_rate=1.0, warmup_steps=10, total_steps=110,
                                                schedule="cosine", end_lr_ratio=0.1))
    assert float(cos(0)) == 0.0
    assert float(cos(5)) == pytest.approx(0.5)
    assert float(cos(10)) == pytest.approx(1.0)
    assert float(cos(60)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-5)
    assert float(cos(110)) == pytest.approx(0.1, rel=1e-5)
    lin = optim.make_schedule(optim.OptimConfig(learning_rate=2.0, warmup_steps=0, total_steps=100, schedule="linear"))
    assert float(lin(25)) == pytest.approx(1.5)
    assert float(lin(100)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="schedule"):
        optim.OptimConfig(schedule="step")


def _quadratic_setup(clip=None):
    cfg = optim.OptimConfig(learning_rate=0.1, total_steps=10, schedule="constant", max_grad_norm=clip)
    tx = optim.make_optimizer(cfg)
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    return tx, params, tx.init(params)


def test_guarded_update_applies_finite_and_skips_nonfinite_bit_exactly():
    tx, params, opt_state = _quadratic_setup()
    grads = jax.tree.map(jnp.ones_like, params)
    p1, s1, gn, skipped = optim.guarded_update(tx, params, opt_state, grads, jnp.float32(1.0))
    assert not bool(skipped)
    assert float(gn) == pytest.approx(2.0)
    np.testing.assert_allclose(np.asarray(p1["w"]), np.asarray(params["w"]) - 0.1, rtol=1e-5)

    for bad_loss, bad_grads in ((jnp.float32(jnp.nan), grads),
                                (jnp.float32(1.0), {"w": jnp.array([1.0, jnp.inf, 0.0]), "b": jnp.array(0.0)})):
        p2, s2, _, skipped = optim.guarded_update(tx, p1, s1, bad_grads, bad_loss)
        assert bool(skipped)
        for a, b in zip(jax.tree.leaves((p2, s2)), jax.tree.leaves((p1, s1))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _first_moment(opt_state):
    """The AdamW first moment of the project's optimizer state (the one ScaleByAdamState in the chain)."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    assert len(found) == 1
    return found[0].mu


def test_global_norm_clipping_limits_the_step():
    grads = {"w": jnp.array([30.0, 0.0, 40.0]), "b": jnp.array(0.0)}  # global norm 50
    moments = {}
    for clip in (1.0, None):
        tx, params, opt_state = _quadratic_setup(clip=clip)
        _, new_state, gn, _ = optim.guarded_update(tx, params, opt_state, grads, jnp.float32(0.0))
        assert float(gn) == pytest.approx(50.0)  # reported before clipping
        moments[clip] = np.asarray(_first_moment(new_state)["w"])
    # mu = (1 - b1) g after one update: with clipping g is rescaled to norm 1, without it is the raw gradient.
    np.testing.assert_allclose(moments[None], 0.1 * np.array([30.0, 0.0, 40.0]), rtol=1e-6)
    np.testing.assert_allclose(moments[1.0], 0.1 * np.array([30.0, 0.0, 40.0]) / 50.0, rtol=1e-5)


def test_weight_decay_skips_biases_and_norms_like_hf_and_is_configurable():
    params = {"model": {"norm": {"weight": jnp.ones(2)},
                        "layers": {0: {"input_layernorm": {"weight": jnp.ones(2)},
                                       "self_attn": {"q_proj": {"bias": jnp.ones(2), "kernel": jnp.ones(2)}}}}},
              "lm_head": {"kernel": jnp.ones(2)}}
    assert optim.param_name(jax.tree_util.tree_flatten_with_path(params)[0][0][0]) == "lm_head.kernel"
    zero = jax.tree.map(jnp.zeros_like, params)
    for patterns, decayed in ((optim.HF_NO_DECAY_PATTERNS, {"lm_head.kernel", "model.layers.0.self_attn.q_proj.kernel"}),
                              ((), None)):
        cfg = optim.OptimConfig(learning_rate=0.5, total_steps=10, schedule="constant", weight_decay=0.1,
                                no_decay_patterns=patterns)
        tx = optim.make_optimizer(cfg)
        new, _, _, _ = optim.guarded_update(tx, params, tx.init(params), zero, jnp.float32(0.0))
        for path, leaf in jax.tree_util.tree_flatten_with_path(new)[0]:
            name = optim.param_name(path)
            expect = 1.0 - 0.5 * 0.1 if decayed is None or name in decayed else 1.0  # zero grads: only the decay
            np.testing.assert_allclose(np.asarray(leaf), expect, rtol=1e-6, err_msg=name)


def test_accumulated_gradient_equals_full_batch_gradient():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(12, 3)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(12,)).astype(np.float32))
    params = {"w": jnp.array([0.3, -0.1, 0.2])}

    def loss_fn(p, batch):
        err = batch["x"] @ p["w"] - batch["y"]
        return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}

    full_loss, full_m, full_g = optim.accumulate_gradients(loss_fn, params, {"x": x, "y": y}, 1)
    acc_loss, acc_m, acc_g = optim.accumulate_gradients(loss_fn, params, {"x": x, "y": y}, 3)
    np.testing.assert_allclose(float(acc_loss), float(full_loss), rtol=1e-5)
    np.testing.assert_allclose(float(acc_m["mae"]), float(full_m["mae"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(acc_g["w"]), np.asarray(full_g["w"]), rtol=1e-5)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        optim.accumulate_gradients(loss_fn, params, {"x": x, "y": y}, 5)


def test_master_weights_are_float32_and_moments_too():
    params = {"w": jnp.ones((2, 2), jnp.bfloat16), "ids": jnp.arange(3)}
    master = optim.to_master(params)
    assert master["w"].dtype == jnp.float32 and master["ids"].dtype == params["ids"].dtype
    tx = optim.make_optimizer(optim.OptimConfig())
    state = tx.init({"w": master["w"]})
    float_leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert float_leaves and all(x.dtype == jnp.float32 for x in float_leaves)
