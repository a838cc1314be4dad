"""Token-id examples to fixed-shape padded arrays with loss masks, and the deterministic data order.

Every trainer pads to one static ``max_length`` so its train step compiles
once. Sequences are right-padded ``prompt + completion``; the loss mask covers
completion tokens only (never the prompt, never padding). ``loss_mask[t]``
marks that token ``t`` is scored, i.e. predicted by the logits at ``t - 1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from typing import Sequence

import numpy as np

TokenIds = Sequence[int]


@dataclasses.dataclass(frozen=True)
class PromptCompletion:
    """One supervised example: the prompt's token ids and the completion's."""

    prompt: TokenIds
    completion: TokenIds


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) completion, as token ids."""

    prompt: TokenIds
    chosen: TokenIds
    rejected: TokenIds
    margin: float = 0.0  # optional reward-model margin (Llama-2 style); ignored by DPO


def _fit(prompt: TokenIds, completion: TokenIds, max_length: int) -> tuple[list[int], list[int], bool]:
    """Drop prompt tokens from the left, then completion tokens from the right, until it fits.

    The prompt keeps at least ``max_length // 2`` of its last tokens. This differs from TRL's ``keep_start``
    (cut the end of prompt + completion): see ``TrainerConfig.max_length``.
    """
    prompt, completion = list(prompt), list(completion)
    if not completion:
        raise ValueError("an example has an empty completion; nothing would be trained on it")
    truncated = len(prompt) + len(completion) > max_length
    if truncated:
        keep_prompt = max(max_length - len(completion), min(len(prompt), max_length // 2))
        prompt = prompt[len(prompt) - keep_prompt:] if keep_prompt > 0 else []
        completion = completion[: max_length - len(prompt)]
    return prompt, completion, truncated


def pad_sequences(prompts: Sequence[TokenIds], completions: Sequence[TokenIds], max_length: int,
                  pad_token_id: int) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``loss_mask``, each ``[N, max_length]`` (right padded)."""
    n = len(prompts)
    if len(completions) != n:
        raise ValueError(f"{n} prompts but {len(completions)} completions")
    ids = np.full((n, max_length), pad_token_id, np.int32)
    attn = np.zeros((n, max_length), np.int32)
    loss = np.zeros((n, max_length), np.float32)
    n_trunc = 0
    for i, (p, c) in enumerate(zip(prompts, completions)):
        p, c, truncated = _fit(p, c, max_length)
        n_trunc += truncated
        seq = p + c
        ids[i, : len(seq)] = seq
        attn[i, : len(seq)] = 1
        loss[i, len(p): len(seq)] = 1.0
    if n_trunc:
        warnings.warn(f"{n_trunc}/{n} examples were longer than max_length={max_length} and were truncated",
                      stacklevel=3)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


def left_pad_prompts(prompts: Sequence[TokenIds], max_prompt_length: int, pad_token_id: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ``[N, max_prompt_length]`` prompt ids and mask (long prompts keep their end)."""
    ids = np.full((len(prompts), max_prompt_length), pad_token_id, np.int32)
    mask = np.zeros((len(prompts), max_prompt_length), np.int32)
    for i, p in enumerate(prompts):
        p = list(p)[-max_prompt_length:]
        if not p:
            raise ValueError(f"prompt {i} is empty")
        ids[i, max_prompt_length - len(p):] = p
        mask[i, max_prompt_length - len(p):] = 1
    return ids, mask


def stream_indices(num_examples: int, start: int, count: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """Example indices ``start .. start + count`` of an endless stream of per-epoch permutations.

    Epoch ``e`` is ``permutation(num_examples)`` seeded by ``(seed, e)``, so the
    batch at any position is a pure function of the position: resuming from a
    checkpoint needs only the position.
    """
    if num_examples < 1:
        raise ValueError("the training set is empty")
    out = np.empty(count, np.int64)
    for j, pos in enumerate(range(start, start + count)):
        epoch, offset = divmod(pos, num_examples)
        if shuffle:
            perm = _epoch_permutation(num_examples, seed, epoch)
            out[j] = perm[offset]
        else:
            out[j] = offset
    return out


def length_grouped_indices(lengths: np.ndarray, start: int, count: int, batch_size: int, seed: int,
                           group_batches: int = 16, shuffle: bool = True) -> np.ndarray:
    """``stream_indices`` regrouped so that each batch holds examples of similar length.

    The stream is cut into groups of ``group_batches`` batches; a group's examples are sorted by length (longest
    first) and split into batches, which are then visited in an order seeded by ``(seed, group)`` (as Hugging
    Face's ``group_by_length`` sampler does). Every example is still seen once per epoch of the stream, and the
    batch at any position is a pure function of the position (exact resume). Batches trimmed to their longest
    example then cost what their examples need, not what the longest example of the data set needs.
    ``start`` must be a multiple of ``batch_size``.
    """
    if start % batch_size:
        raise ValueError(f"start={start} is not a multiple of batch_size={batch_size}")
    lengths = np.asarray(lengths)
    group = batch_size * group_batches
    out = np.empty(count, np.int64)
    groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, pos in enumerate(range(start, start + count)):
        g, offset = divmod(pos, group)
        if g not in groups:
            members = stream_indices(len(lengths), g * group, group, seed, shuffle)
            members = members[np.argsort(-lengths[members], kind="stable")]
            order = (np.random.default_rng([seed, g, 1]).permutation(group_batches) if shuffle
                     else np.arange(group_batches))
            groups[g] = members, order
        members, order = groups[g]
        b, i = divmod(offset, batch_size)
        out[j] = members[order[b] * batch_size + i]
    return out


def used_columns(attention_mask: np.ndarray, multiple: int) -> slice:
    """The columns ``[start, stop)`` that hold every row's tokens, left and right padding cut, widened to a
    multiple of ``multiple`` within the full width (few distinct shapes, few compilations)."""
    full = attention_mask.shape[1]
    cols = np.flatnonzero(attention_mask.any(axis=0))
    first, last = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
    width = min(full, -(-(last - first) // multiple) * multiple)
    start = min(first, full - width)
    return slice(start, start + width)


def trim_padding(batch: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """The padded ``[N, L]`` arrays of ``batch`` cut to ``used_columns`` of its attention mask, and its per-token
    ``[N, L - 1]`` arrays (values of tokens 1..L-1, as ``sequence_logps`` returns them) to the same tokens.

    Exactly the same loss up to float rounding: causal attention never reads right padding, left padding is
    masked, and positions count from each row's first token (``models.positions_from_mask``).
    """
    return cut_columns(batch, used_columns(batch["attention_mask"], multiple))


def cut_columns(batch: dict[str, np.ndarray], cols: slice) -> dict[str, np.ndarray]:
    """The ``[N, L]`` arrays of ``batch`` cut to the columns ``cols``, its per-token ``[N, L - 1]`` arrays to the
    same tokens; other arrays as they are."""
    full = batch["attention_mask"].shape[1]
    tokens = slice(cols.start, cols.stop - 1)
    return {k: v[:, cols] if v.ndim == 2 and v.shape[1] == full
            else v[:, tokens] if v.ndim == 2 and v.shape[1] == full - 1 else v for k, v in batch.items()}


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 64:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return _PERM_CACHE[key]


def fingerprint(*arrays: np.ndarray) -> str:
    """Content hash of a data set's arrays (identifies it across restarts)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
