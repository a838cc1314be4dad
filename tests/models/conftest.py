"""Tiny random transformers checkpoints (torch CPU), written once per session into a temp dir."""
import numpy as np
import pytest

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6)


def _hf_configs():
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


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """name -> directory holding a tiny random HF causal LM saved with save_pretrained (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hf_tiny")
    out = {}
    for i, (name, cfg) in enumerate(_hf_configs().items()):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        with torch.no_grad():  # non-trivial norms and biases so their mapping is tested
            for pname, p in model.named_parameters():
                if "norm" in pname or pname.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(root / name)
        out[name] = str(root / name)
    return out


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
