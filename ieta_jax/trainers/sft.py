"""Supervised fine-tuning: next-token cross-entropy on completion tokens only."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from ieta_jax import losses
from ieta_jax.trainers.base import Trainer, TrainerConfig
from ieta_jax.trainers.batching import PromptCompletion, length_grouped_indices, pad_sequences, trim_padding


@dataclasses.dataclass
class SFTConfig(TrainerConfig):
    """SFT settings beyond the shared ones.

    group_by_length: batches of examples of similar length (``batching.length_grouped_indices``, Hugging Face's
      ``group_by_length``), each cut to its longest example: with a few long examples among many short ones
      (repair prompts in the warm-start corpus) most steps cost a fraction of a ``max_length`` step.
    """

    group_by_length: bool = False


class SFTTrainer(Trainer):
    """``SFTTrainer(model, SFTConfig(...), mesh=..., workdir=...).fit(examples, num_steps)``.

    ``examples``: a sequence of ``PromptCompletion`` (or ``(prompt_ids, completion_ids)``
    tuples). The loss is the mean cross-entropy over all completion tokens of
    the batch (prompt and padding excluded); metrics ``train/loss`` and
    ``train/num_tokens``.
    """

    name = "sft"

    def _prepare(self, data: Sequence[PromptCompletion]) -> dict[str, np.ndarray]:
        prompts, completions = zip(*[(ex.prompt, ex.completion) if isinstance(ex, PromptCompletion) else ex
                                     for ex in data])
        return pad_sequences(prompts, completions, self.config.max_length, self.config.pad_token_id)

    # Trimmed batches are padded to a multiple of this: at most max_length / 64 shapes to compile.
    length_multiple = 64

    def _batch_indices(self, arrays, start, count):
        if not self.config.group_by_length:
            return super()._batch_indices(arrays, start, count)
        return length_grouped_indices(arrays["attention_mask"].sum(axis=1), start, count, self.config.batch_size,
                                      self.config.seed, shuffle=self.config.shuffle)

    def _finalize_batch(self, batch):
        if self.config.group_by_length:
            batch = trim_padding(batch, self.length_multiple)
        # Token-mean over the whole batch, also across accumulated micro-batches.
        n = max(float(batch["loss_mask"][:, 1:].sum()), 1.0)
        batch["normalizer"] = np.full((batch["input_ids"].shape[0],), n / self.config.optim.grad_accum_steps,
                                      np.float32)
        return batch

    def loss_fn(self, params, aux, batch, rng):
        model = self.merge(params, aux)
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"])
        mask = batch["loss_mask"][:, 1:]
        loss = losses.masked_mean_cross_entropy(logits[:, :-1], batch["input_ids"][:, 1:], mask,
                                                normalizer=batch["normalizer"][0])
        # Metrics are averaged over accumulated micro-batches; scaling by their number makes this the batch total.
        n_tok = mask.sum().astype(jax.numpy.float32) * self.config.optim.grad_accum_steps
        return loss, {"train/num_tokens": n_tok}
