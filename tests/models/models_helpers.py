"""Shared helpers of the models tests (a uniquely named module, so no clash with other areas' conftest)."""
import numpy as np

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6)


def hf_configs():
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    return {
        "llama": LlamaConfig(**TINY, rope_theta=10000.0, tie_word_embeddings=False),
        # Llama-3 style rope scaling, tied embeddings, explicit head_dim != hidden/heads.
        "llama3_tied": LlamaConfig(**{**TINY, "max_position_embeddings": 128}, head_dim=16, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 16}),
        "qwen2": Qwen2Config(**TINY, tie_word_embeddings=True),
        # Sliding window shorter than the test sequences so the window mask is exercised.
        "mistral": MistralConfig(**TINY, sliding_window=5, head_dim=8),
        "llama_linear": LlamaConfig(**TINY, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                                              "factor": 2.0}),
        # max_position_embeddings below the test length so the dynamic NTK branch is taken.
        "llama_dynamic": LlamaConfig(**{**TINY, "max_position_embeddings": 6},
                                     rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
    }


def hf_logits(directory, ids, mask, positions):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(np.asarray(ids)), attention_mask=torch.tensor(np.asarray(mask)),
                     position_ids=torch.tensor(np.asarray(positions))).logits.numpy()


def padded_batch(seed=0, vocab=97, length=12, left=True):
    """A batch of 3 rows of different lengths, padded left or right; returns ids, mask, positions (numpy)."""
    rng = np.random.default_rng(seed)
    lengths = [length, length - 4, length - 7]
    ids = np.zeros((3, length), np.int32)
    mask = np.zeros((3, length), np.int32)
    for r, n in enumerate(lengths):
        sl = slice(length - n, length) if left else slice(0, n)
        ids[r, sl] = rng.integers(1, vocab, n)
        mask[r, sl] = 1
    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    return ids, mask, positions


def sharding_case():
    """A tiny random CausalLM (dims divisible by every mesh axis) and a right-padded batch of 8 rows."""
    from flax import nnx

    from ieta_jax import models

    cfg = models.ModelConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)
    model = models.CausalLM(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 128, (8, 16)).astype(np.int32)
    mask = (np.arange(16)[None] < rng.integers(6, 17, (8, 1))).astype(np.int32)
    return model, {"ids": ids, "mask": mask}


def loss_and_grads(model, batch, mesh=None):
    """Masked next-token cross-entropy and its gradients, jitted (on `mesh` with param shardings if given).

    Returns (loss, {param path: grad}).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ieta_jax import sharding

    graphdef, params = nnx.split(model)

    def loss_fn(params, batch):
        logits = nnx.merge(graphdef, params)(batch["ids"], batch["mask"])
        logp = jax.nn.log_softmax(logits[:, :-1], -1)
        tok = jnp.take_along_axis(logp, batch["ids"][:, 1:, None], -1)[..., 0]
        m = batch["mask"][:, 1:].astype(jnp.float32)
        return -(tok * m).sum() / m.sum()

    fn = jax.value_and_grad(loss_fn)
    if mesh is None:
        loss, grads = jax.jit(fn)(params, batch)
    else:
        param_sh = sharding.state_shardings(params, mesh)
        with jax.set_mesh(mesh):
            loss, grads = jax.jit(fn, out_shardings=(jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
                                                     param_sh))(params, batch)
    return loss, {k: v.get_value() for k, v in nnx.to_flat_state(grads)}
