"""KV-cache sampler: greedy parity with transformers.generate, sampling filters, EOS, reproducibility, mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from models_helpers import padded_batch

from ieta_jax import models, sampling, sharding

N_NEW = 10


def _hf_greedy(directory, ids, mask, n_new, eos):
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        seq = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                          max_new_tokens=n_new, do_sample=False, eos_token_id=eos, pad_token_id=0)
    new = seq[:, ids.shape[1]:].numpy()
    return np.pad(new, ((0, 0), (0, n_new - new.shape[1])), constant_values=0)


@pytest.fixture(scope="module")
def eos_for(hf_checkpoints):
    """An EOS id that the greedy continuation of row 1 actually hits, so early stopping is exercised."""
    out = {}
    for name in ("llama", "qwen2", "mistral"):
        ids, mask, _ = padded_batch(seed=5, left=True)
        greedy = _hf_greedy(hf_checkpoints[name], ids, mask, N_NEW, eos=None)
        out[name] = int(greedy[1, 3])
    return out


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral"])
def test_greedy_matches_transformers_left_padded(hf_checkpoints, eos_for, name):
    ids, mask, _ = padded_batch(seed=5, left=True)
    eos = eos_for[name]
    ref = _hf_greedy(hf_checkpoints[name], ids, mask, N_NEW, eos=eos)
    model = models.from_pretrained(hf_checkpoints[name])
    out = sampling.generate(model, ids, N_NEW, prompt_mask=mask, eos_token_id=eos, pad_token_id=0)
    np.testing.assert_array_equal(out.tokens, ref)
    stopped = (ref == eos).any(-1)
    assert stopped[1]  # early stop happened in this batch
    expected_len = np.where(stopped, np.argmax(ref == eos, -1) + 1, N_NEW)
    np.testing.assert_array_equal(out.lengths, expected_len)


def test_logprobs_equal_teacher_forced_forward(hf_checkpoints):
    model = models.from_pretrained(hf_checkpoints["qwen2"])
    ids, mask, _ = padded_batch(seed=6, left=False)
    out = sampling.generate(model, ids, 6, prompt_mask=mask, temperature=1.0, rng=jax.random.key(3))
    full_ids = np.concatenate([out.prompt_ids, out.tokens], 1)
    full_mask = np.concatenate([out.prompt_mask, np.ones_like(out.tokens, bool)], 1)
    logp = jax.nn.log_softmax(model(full_ids, full_mask), -1)
    p = out.prompt_ids.shape[1]
    ref = np.take_along_axis(np.asarray(logp[:, p - 1:-1]), out.tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.logprobs, ref, atol=2e-5)


def test_sampling_filters_reproducibility_and_num_samples(hf_checkpoints):
    model = models.from_pretrained(hf_checkpoints["llama"])
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13]]
    kw = dict(max_new_tokens=8, temperature=1.3, rng=jax.random.key(0), num_samples=4)
    a = sampling.generate(model, prompts, **kw)
    b = sampling.generate(model, prompts, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.tokens.shape == (8, 8)
    assert len({tuple(r) for r in a.tokens}) > 4  # samples of the same prompt differ
    c = sampling.generate(model, prompts, **{**kw, "rng": jax.random.key(1)})
    assert not np.array_equal(a.tokens, c.tokens)
    # top_k=1 and a tiny top_p both reduce to greedy whatever the temperature
    greedy = sampling.generate(model, prompts, max_new_tokens=8)
    k1 = sampling.generate(model, prompts, max_new_tokens=8, temperature=2.0, top_k=1, rng=3)
    p0 = sampling.generate(model, prompts, max_new_tokens=8, temperature=2.0, top_p=1e-6, rng=4)
    np.testing.assert_array_equal(k1.tokens, greedy.tokens)
    np.testing.assert_array_equal(p0.tokens, greedy.tokens)


def test_sample_logits_top_k_top_p_support():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    keys = jax.random.key(0)
    top2 = np.asarray(sampling.sample_logits(logits, keys, 1.0, 1.0, 2))
    assert set(np.unique(top2)) == {0, 1}
    assert abs((top2 == 0).mean() - 0.5 / 0.8) < 0.03
    nucleus = np.asarray(sampling.sample_logits(logits, keys, 1.0, 0.75, 0))  # keeps 0.5+0.3 (mass before < .75)
    assert set(np.unique(nucleus)) == {0, 1}
    full = np.asarray(sampling.sample_logits(logits, keys, 1.0, 1.0, 0))
    assert set(np.unique(full)) == {0, 1, 2, 3}


def _nucleus_reference(x: np.ndarray, top_p: float, top_k: int) -> np.ndarray:
    """The rule by sorting, in float64: keep the top-k values, then the values whose more likely tokens (ties kept
    together) hold less than top_p of the remaining mass."""
    keep = np.zeros(x.shape, bool)
    for i, row in enumerate(x.astype(np.float64)):
        desc = np.sort(row)[::-1]
        kth = desc[top_k - 1] if 0 < top_k < len(row) else -np.inf
        allowed = row >= kth
        p = np.where(allowed, np.exp(row - desc[0]), 0.0)
        p /= p.sum()
        before = np.array([p[row > v].sum() for v in row])
        keep[i] = allowed & (row >= row[before < top_p].min())
    return keep


@pytest.mark.parametrize("top_p,top_k", [(0.9, 0), (0.5, 0), (0.3, 4), (1.0, 3), (1e-6, 0)])
def test_truncation_keeps_the_top_k_and_nucleus(top_p, top_k):
    """The sort-free truncation (bisection over value order) keeps what the sort-based rule keeps: ties, negative
    and -inf values included (logits on a grid of 0.25 keep every cumulative mass off the top_p boundary)."""
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((32, 50)) * 8) / 4
    x[::3, :10] = -np.inf
    x[1] = 0.0  # all tied: every token is kept
    x[2, 7] = -0.0
    got = ~np.isneginf(np.asarray(sampling._truncate(jnp.asarray(x, jnp.float32), top_p, top_k)))
    np.testing.assert_array_equal(got, _nucleus_reference(x, top_p, top_k))


def test_sample_logits_picks_what_argmax_and_categorical_pick():
    """The sampler's own argmax: first of tied maxima, first NaN; its draw is jax.random.categorical's for a key."""
    x = jax.random.normal(jax.random.key(1), (64, 300))
    x = x.at[3, 7].set(9.0).at[3, 200].set(9.0).at[5, 11].set(jnp.nan).at[5, 40].set(jnp.nan).at[6].set(-jnp.inf)
    np.testing.assert_array_equal(sampling.sample_logits(x, jax.random.key(0), 0.0, 1.0, 0), jnp.argmax(x, -1))
    key = jax.random.key(2)
    np.testing.assert_array_equal(sampling.sample_logits(x[:3], key, 0.7, 1.0, 0),
                                  jax.random.categorical(key, x[:3] / 0.7, axis=-1))


def test_generate_on_training_mesh_matches_single_device(hf_checkpoints):
    model = models.from_pretrained(hf_checkpoints["llama"])
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [4]]
    ref = sampling.generate(model, prompts, max_new_tokens=6, temperature=0.0)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    sharded = models.from_pretrained(hf_checkpoints["llama"], mesh=mesh)
    assert sharded.model.layers[0].mlp.up_proj.kernel[...].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    out = sampling.generate(sharded, prompts, max_new_tokens=6, temperature=0.0)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)
    # 3 prompts x 3 samples: the prefill's 3 rows are replicated, the 9 sample rows padded to 12 for the 4 shards
    out = sampling.generate(sharded, prompts, max_new_tokens=6, temperature=0.0, num_samples=3)
    np.testing.assert_array_equal(out.tokens, np.repeat(ref.tokens, 3, axis=0))


def test_num_samples_equal_repeated_prompts(hf_checkpoints):
    """Each distinct prompt is prefilled once and its cache copied to its samples: the same samples as the
    prompts repeated by the caller (same rows, same key)."""
    model = models.from_pretrained(hf_checkpoints["qwen2"])
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25], [4]]
    kw = dict(max_new_tokens=8, temperature=1.0, rng=11)
    out = sampling.generate(model, prompts, num_samples=3, **kw)
    ref = sampling.generate(model, [p for p in prompts for _ in range(3)], **kw)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-6)
    np.testing.assert_array_equal(out.prompt_ids, ref.prompt_ids)
    assert len({tuple(r) for r in out.tokens[:3]}) > 1  # one prompt's samples differ


def test_decode_text_applies_stop_strings():
    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(ord("a") + i) for i in ids)

    out = sampling.GenerateOutput(tokens=np.array([[0, 1, 2, 3], [3, 2, 1, 0]]), logprobs=np.zeros((2, 4)),
                                  lengths=np.array([4, 3]), prompt_ids=np.zeros((2, 1)), prompt_mask=np.ones((2, 1)))
    assert sampling.decode_text(Tok(), out) == ["abcd", "dcb"]
    assert sampling.decode_text(Tok(), out, stop=["c", "zz"]) == ["ab", "d"]


def test_one_compilation_serves_all_settings_and_prompt_lengths(hf_checkpoints):
    model = models.from_pretrained(hf_checkpoints["mistral"])
    before = sampling._generate._cache_size()
    sampling.generate(model, [[3, 4], [5, 6, 7]], 7)
    sampling.generate(model, [[3, 4, 9, 9, 9], [5]], 7, temperature=0.7, top_p=0.9, top_k=5, rng=1)
    sampling.generate(model, [[1] * 16, [2] * 9], 7, temperature=1.0, rng=2)
    assert sampling._generate._cache_size() == before + 1


def test_stream_chunks_equal_generate_and_top_logprobs_are_exact(hf_checkpoints):
    model = models.from_pretrained(hf_checkpoints["llama"])
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13]]
    for kw in (dict(), dict(temperature=1.0, rng=3, num_samples=2)):
        ref = sampling.generate(model, prompts, 12, top_logprobs=3, **kw)
        chunks = list(sampling.generate_stream(model, prompts, 12, top_logprobs=3, chunk_tokens=4, **kw))
        assert [c.start for c in chunks] == [0, 1, 5, 9]       # token 0 alone, then 4 per chunk
        np.testing.assert_array_equal(np.concatenate([c.tokens for c in chunks], 1), ref.tokens)
        np.testing.assert_array_equal(np.concatenate([c.top_ids for c in chunks], 1), ref.top_ids)
        np.testing.assert_allclose(np.concatenate([c.logprobs for c in chunks], 1), ref.logprobs, atol=1e-6)
        np.testing.assert_array_equal(chunks[-1].lengths, ref.lengths)
        full_ids = np.concatenate([ref.prompt_ids, ref.tokens], 1)
        full_mask = np.concatenate([ref.prompt_mask, np.ones_like(ref.tokens, bool)], 1)
        p = ref.prompt_ids.shape[1]
        logp = np.asarray(jax.nn.log_softmax(model(full_ids, full_mask), -1))[:, p - 1:-1]
        best = np.argsort(-logp, -1, kind="stable")[..., :3]
        np.testing.assert_array_equal(ref.top_ids, best)
        np.testing.assert_allclose(ref.top_logprobs, np.take_along_axis(logp, best, -1), atol=2e-5)
    # every row ends at EOS: the stream stops there instead of decoding to max_new_tokens
    greedy = sampling.generate(model, prompts, 12)
    eos = int(greedy.tokens[0, 2])
    stopped = sampling.generate(model, prompts, 12, eos_token_id=[eos, int(greedy.tokens[1, 2])])
    chunks = list(sampling.generate_stream(model, prompts, 12, eos_token_id=[eos, int(greedy.tokens[1, 2])],
                                           chunk_tokens=4))
    assert len(chunks) == 2 and chunks[-1].done.all()
    np.testing.assert_array_equal(chunks[-1].lengths, stopped.lengths)
    assert sampling.generate(model, prompts, 12).top_ids is None


def test_decode_segments_cover_every_step():
    """Each of `generate`'s decode segments has a slot for every key its steps write and attend to, the last one
    ends at max_new_tokens, and short generations stay one loop (one compiled decode step)."""
    for prompt_len in (16, 64, 256):
        for n_new in (1, 2, 33, 64, 65, 97, 128, 512):
            segments = sampling._segments(prompt_len, n_new)
            assert segments[-1][0] == n_new and len(segments) <= sampling.DECODE_SEGMENTS
            assert [e for e, _ in segments] == sorted({e for e, _ in segments})
            for end, slots in segments:
                assert prompt_len + end - 1 <= slots <= prompt_len + n_new  # step end - 1 attends to P + end - 1
            assert len(segments) == 1 or (n_new - 1) // len(segments) >= sampling.MIN_SEGMENT_STEPS
    assert len(sampling._segments(64, 64)) == 1 and len(sampling._segments(64, 128)) == 3


@pytest.mark.parametrize("name", ["llama", "mistral"])
def test_segmented_decode_equals_one_loop_over_all_slots(hf_checkpoints, name):
    """70 new tokens decode in 2 segments, each over the cache slots its steps fill (sliding window included):
    the same tokens and log-probabilities as the stream's single loop over all of the generation's slots."""
    ids, mask, _ = padded_batch(seed=7, left=True)
    n_new = 70
    assert len(sampling._segments(16, n_new)) == 2
    model = models.from_pretrained(hf_checkpoints[name])
    for kw in (dict(), dict(temperature=1.0, rng=5)):
        out = sampling.generate(model, ids, n_new, prompt_mask=mask, pad_token_id=0, **kw)
        chunks = list(sampling.generate_stream(model, ids, n_new, prompt_mask=mask, pad_token_id=0, chunk_tokens=80,
                                               **kw))
        np.testing.assert_array_equal(np.concatenate([c.tokens for c in chunks], 1), out.tokens)
        np.testing.assert_allclose(np.concatenate([c.logprobs for c in chunks], 1), out.logprobs, atol=1e-5)
