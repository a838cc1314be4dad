"""Bradley-Terry reward-model training on the same preference pairs DPO uses."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ieta_jax import losses
from ieta_jax.trainers.base import Trainer, TrainerConfig, batched_apply
from ieta_jax.trainers.batching import TokenIds, pad_sequences
from ieta_jax.trainers.dpo import concat_pair_batch, pad_pairs


@dataclasses.dataclass
class RewardConfig(TrainerConfig):
    center_coef: float = 0.0  # TRL's center_rewards_coefficient
    use_margin: bool = False  # subtract each PreferencePair.margin inside the sigmoid


class RewardTrainer(Trainer):
    """``RewardTrainer(models.RewardModel(...), RewardConfig(...), mesh=...).fit(pairs, num_steps)``.

    Chosen and rejected are scored in one forward pass; loss and metrics
    (``accuracy``, ``margin``, ``mean_reward``, ``min_reward``, ``max_reward``)
    from ``losses.reward_loss``. ``score`` rates prompt/completion token ids
    with the trained model (what the RL trainer uses).
    """

    name = "reward"

    def __init__(self, model, config: RewardConfig, **kw):
        # The model reads its score at the last token that is not config.pad_token_id (models.score_index, HF's
        # rule), and an exported checkpoint carries that pad id, so transformers/TRL score it on the same token.
        cfg = getattr(model, "config", None)
        if cfg is not None and cfg.pad_token_id != config.pad_token_id:
            if cfg.pad_token_id is not None:
                warnings.warn(f"reward model config has pad_token_id={cfg.pad_token_id}; the trainer pads with "
                              f"{config.pad_token_id}, which the model (and its export) now treats as padding",
                              stacklevel=2)
            model.config = cfg.replace(pad_token_id=config.pad_token_id)
        super().__init__(model, config, **kw)

    def flops_per_example(self, batch):
        return 6.0 * self.num_params * 2 * batch["chosen_input_ids"].shape[-1]

    def _prepare(self, data):
        return pad_pairs(data, self.config.max_length, self.config.pad_token_id)

    def loss_fn(self, params, aux, batch, rng):
        ids, attn, _ = concat_pair_batch(batch)
        rewards = self.merge(params, aux)(ids, attention_mask=attn)
        rc, rr = jnp.split(rewards, 2)
        margin = batch["margin"] if self.config.use_margin else None
        return losses.reward_loss(rc, rr, margin=margin, center_coef=self.config.center_coef)

    def score(self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], batch_size: int = 0) -> np.ndarray:
        """Scalar rewards ``[N]`` for prompt + completion token ids under the current parameters."""
        arrays = pad_sequences(prompts, completions, self.config.max_length, self.config.pad_token_id)
        return score_arrays(self, self.state.params, arrays["input_ids"], arrays["attention_mask"],
                            batch_size or self.config.batch_size)


def score_arrays(trainer: Trainer, params, input_ids: np.ndarray, attention_mask: np.ndarray,
                 batch_size: int) -> np.ndarray:
    """Reward-model scores of padded arrays in fixed-size chunks (one compilation)."""
    fn = getattr(trainer, "_score_fn", None)
    if fn is None:
        fn = trainer._score_fn = jax.jit(lambda p, aux, ids, m: trainer.merge(p, aux)(ids, attention_mask=m))
    out = batched_apply(lambda b: fn(params, trainer.aux, b["ids"], b["mask"]),
                        {"ids": input_ids, "mask": attention_mask}, batch_size, trainer.mesh)
    return out.astype(np.float32)
