"""Direct Preference Optimisation on token-id preference pairs.

Chosen and rejected sequences go through the policy in one forward pass
(concatenated along the batch). Reference log-probs are computed once per
preference set, before the first step, with the frozen reference; the step
then holds only the policy. ``online_reference=True`` instead keeps the
reference parameters on the mesh and scores each batch with them inside the
step (needed only when the reference must see something precomputation can't,
and it costs a second model's memory and a second forward pass).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import losses, sharding
from ieta_jax.trainers.base import Trainer, TrainerConfig, batched_apply, sequence_logps, split_model
from ieta_jax.trainers.batching import PreferencePair, pad_sequences


@dataclasses.dataclass
class DPOConfig(TrainerConfig):
    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid | ipo | hinge | robust (see losses.dpo_loss)
    # cDPO for sigmoid, rDPO for robust. TRL 1.16 ignores label_smoothing for sigmoid (ours applies it).
    label_smoothing: float = 0.0
    online_reference: bool = False
    ref_batch_size: Optional[int] = None  # pairs per reference forward pass (default: batch_size)
    # Weight of an added next-token NLL on the chosen completions (RPO, Pang et al. 2024; TRL's rpo_alpha):
    # keeps the likelihood of preferred programs from falling while the margin grows. Logged as nll_loss.
    sft_weight: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in losses.DPO_LOSS_TYPES:
            raise ValueError(f"DPOConfig.loss_type={self.loss_type!r}; expected one of {losses.DPO_LOSS_TYPES}")
        if self.beta <= 0:
            raise ValueError(f"DPOConfig.beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"DPOConfig.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.sft_weight < 0:
            raise ValueError(f"DPOConfig.sft_weight must be >= 0, got {self.sft_weight}")


def pad_pairs(pairs: Sequence[PreferencePair], max_length: int, pad_token_id: int) -> dict[str, np.ndarray]:
    """``chosen_*`` and ``rejected_*`` input_ids / attention_mask / loss_mask arrays, ``[N, max_length]``."""
    pairs = [p if isinstance(p, PreferencePair) else PreferencePair(*p) for p in pairs]
    if not pairs:
        raise ValueError("no preference pairs")
    prompts = [p.prompt for p in pairs]
    out = {}
    for side in ("chosen", "rejected"):
        arrays = pad_sequences(prompts, [getattr(p, side) for p in pairs], max_length, pad_token_id)
        out.update({f"{side}_{k}": v for k, v in arrays.items()})
    out["margin"] = np.asarray([p.margin for p in pairs], np.float32)
    return out


def concat_pair_batch(batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``[2B, T]`` ids, attention mask and loss mask: chosen rows first, then rejected."""
    cat = lambda k: jnp.concatenate([batch[f"chosen_{k}"], batch[f"rejected_{k}"]], axis=0)  # noqa: E731
    return cat("input_ids"), cat("attention_mask"), cat("loss_mask")


def policy_logps(graphdef: nnx.GraphDef, params: Any, aux: dict, ids, attn, loss_mask):
    """Summed completion log-probs, summed mean-logits and token counts, per sequence."""
    logits = nnx.merge(graphdef, params, aux["frozen"])(ids, attention_mask=attn)
    logp_sum, n_tok, logit_sum, _ = sequence_logps(logits, ids, loss_mask)
    return logp_sum, logit_sum, n_tok


def dpo_step_loss(params: Any, aux: dict, batch: dict, rng: jax.Array, *, graphdef: nnx.GraphDef,
                  config: DPOConfig) -> tuple[jax.Array, dict]:
    """The DPO train step's loss and metrics (``Trainer.loss_fn`` form; module level so it compiles alone)."""
    ids, attn, lm = concat_pair_batch(batch)
    logp, logit_sum, n_tok = policy_logps(graphdef, params, aux, ids, attn, lm)
    pc, pr = jnp.split(logp, 2)
    nc, nr = jnp.split(n_tok, 2)
    if config.online_reference:
        ref = policy_logps(graphdef, jax.lax.stop_gradient(aux["ref"]), aux, ids, attn, lm)[0]
        rc, rr = jnp.split(ref, 2)
    else:
        rc, rr = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    loss, metrics = losses.dpo_loss(pc, pr, rc, rr, beta=config.beta, loss_type=config.loss_type,
                                    label_smoothing=config.label_smoothing, chosen_lengths=nc, rejected_lengths=nr)
    # TRL's logits/*: the mean logit over every completion token of the batch (token-weighted).
    lc, lr = jnp.split(logit_sum, 2)
    metrics["logits/chosen"] = lc.sum() / jnp.maximum(nc.sum(), 1.0)
    metrics["logits/rejected"] = lr.sum() / jnp.maximum(nr.sum(), 1.0)
    if config.sft_weight:
        nll = -pc.sum() / jnp.maximum(nc.sum(), 1.0)  # token-mean NLL of the chosen completions
        loss = loss + config.sft_weight * nll
        metrics["nll_loss"] = nll
    return loss, metrics


class DPOTrainer(Trainer):
    """``DPOTrainer(policy, DPOConfig(...), mesh=..., workdir=..., ref_model=None).fit(pairs, num_steps)``.

    ``pairs``: ``PreferencePair`` (or ``(prompt, chosen, rejected)`` token-id
    tuples). ``ref_model`` defaults to the policy as it is when ``fit`` starts
    (so each round of an iterative loop is anchored to the previous round's
    policy). Metrics per step: the TRL names of ``losses.dpo_loss`` plus
    ``train/*`` and ``perf/*``.
    """

    name = "dpo"

    def __init__(self, model: nnx.Module, config: DPOConfig, *, ref_model: Optional[nnx.Module] = None, **kw):
        kw["mesh"] = kw.get("mesh") or sharding.make_mesh()
        self._ref_params = None
        self._ref_logps_fn = None
        if ref_model is not None:
            _, self._ref_params, _, _, _ = split_model(ref_model, kw["mesh"])
        elif config.online_reference:
            # Taken before the base class restores a checkpoint, so a resumed run keeps the initial reference.
            _, self._ref_params, _, _, _ = split_model(model, kw["mesh"])
        super().__init__(model, config, **kw)
        if config.online_reference:
            self.aux["ref"] = self._ref_params
            self.aux_shardings["ref"] = self.params_shardings

    def flops_per_example(self, batch):
        return 6.0 * self.num_params * 2 * batch["chosen_input_ids"].shape[-1]

    # ------------------------------------------------------------------ log-probs
    def _policy_logps(self, params, aux, ids, attn, loss_mask):
        return policy_logps(self.graphdef, params, aux, ids, attn, loss_mask)

    def reference_logps(self, arrays: dict[str, np.ndarray], params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Reference (chosen, rejected) summed log-probs of every pair, in batches of ``ref_batch_size``."""
        params = params if params is not None else (self._ref_params if self._ref_params is not None
                                                     else self.state.params)
        if self._ref_logps_fn is None:
            def fn(params, aux, batch):
                ids, attn, lm = concat_pair_batch(batch)
                logp = self._policy_logps(params, aux, ids, attn, lm)[0]
                return jnp.split(logp, 2)

            self._ref_logps_fn = jax.jit(fn)
        keys = [k for k in arrays if k.startswith(("chosen_", "rejected_"))]
        c, r = batched_apply(lambda b: self._ref_logps_fn(params, self.aux, b), {k: arrays[k] for k in keys},
                             self.config.ref_batch_size or self.config.batch_size, self.mesh,
                             desc="reference log-probs", progress=self.config.progress)
        return c, r

    # ------------------------------------------------------------------ data and loss
    def _prepare(self, data):
        return pad_pairs(data, self.config.max_length, self.config.pad_token_id)

    def _begin_fit(self, arrays, num_steps):
        start = super()._begin_fit(arrays, num_steps)
        if self.config.online_reference:
            return start
        fit = self.meta["fit"]
        if "ref_chosen_logps" not in fit:  # fresh fit; a resumed one reads them from the checkpoint
            # Only the pairs this fit's num_steps batches draw (the data order is known in advance): with more
            # pairs than steps x batch_size the rest would be scored for nothing. The others get 0 (never read).
            n = next(iter(arrays.values())).shape[0]
            bs = self.config.batch_size
            used = np.unique(np.concatenate([self._batch_indices(arrays, k * bs, bs) for k in range(num_steps)]))
            c, r = np.zeros(n, np.float32), np.zeros(n, np.float32)
            c[used], r[used] = self.reference_logps({k: v[used] for k, v in arrays.items()})
            fit["ref_chosen_logps"] = [float(x) for x in c]
            fit["ref_rejected_logps"] = [float(x) for x in r]
        arrays["ref_chosen_logps"] = np.asarray(fit["ref_chosen_logps"], np.float32)
        arrays["ref_rejected_logps"] = np.asarray(fit["ref_rejected_logps"], np.float32)
        return start

    def loss_fn(self, params, aux, batch, rng):
        return dpo_step_loss(params, aux, batch, rng, graphdef=self.graphdef, config=self.config)

    def _fit_inputs(self, batch):
        if self.config.online_reference:
            return batch
        c, r = self.reference_logps(batch)
        return dict(batch, ref_chosen_logps=c, ref_rejected_logps=r)

    def _finalize_batch(self, batch):
        batch.pop("margin", None)
        return batch
