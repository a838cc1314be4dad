"""ModelConfig <-> HF config.json mapping and checkpoint error messages."""
import json
import shutil

import numpy as np
import pytest

from ieta_jax import models


def test_from_hf_reads_qwen2_mistral_llama3_fields():
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    q = models.ModelConfig.from_hf(Qwen2Config(vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
                                               tie_word_embeddings=True).to_dict())
    assert (q.model_type, q.attention_bias, q.tie_word_embeddings, q.rope_theta, q.head_dim, q.sliding_window) == \
        ("qwen2", True, True, 1e6, 16, None)
    m = models.ModelConfig.from_hf(MistralConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                                 head_dim=32, sliding_window=7, num_hidden_layers=2).to_dict())
    assert (m.head_dim, m.sliding_window, m.layer_window(1), m.attention_bias) == (32, 7, 7, False)
    legacy = {"model_type": "llama", "vocab_size": 10, "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "rope_theta": 5e5,
              "rope_scaling": {"type": "linear", "factor": 4.0}}
    c = models.ModelConfig.from_hf(legacy)
    assert (c.num_key_value_heads, c.rope_theta, c.rope_scaling) == (2, 5e5, {"factor": 4.0, "rope_type": "linear"})
    # to_hf round-trips through transformers' own config class
    hf = LlamaConfig(**{k: v for k, v in c.to_hf().items() if k not in ("architectures",)})
    assert models.ModelConfig.from_hf(hf.to_dict()) == c


def test_llama3_inv_freq_matches_transformers():
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    hf = LlamaConfig(hidden_size=2048, num_attention_heads=32, max_position_embeddings=131072, rope_parameters=rope)
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, torch.device("cpu"))
    ours = models.ModelConfig.from_hf(hf.to_dict()).rope_inv_freq()
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), rtol=1e-6)
    base = models.ModelConfig.from_hf({**hf.to_dict(), "rope_parameters": {"rope_theta": 500000.0}}).rope_inv_freq()
    assert not np.allclose(np.asarray(base), ref.numpy())  # scaling actually changes the frequencies


def test_unsupported_and_invalid_configs_fail_clearly():
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'"):
        models.ModelConfig.from_hf({"model_type": "gpt2", "vocab_size": 10})
    with pytest.raises(ValueError, match="unsupported rope_scaling type 'yarn'"):
        models.ModelConfig(rope_scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="not a multiple"):
        models.ModelConfig(num_attention_heads=6, num_key_value_heads=4, hidden_size=48)


def test_checkpoint_errors_name_the_problem(hf_checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local checkpoint directory"):
        models.from_pretrained(str(tmp_path / "nope"))
    broken = tmp_path / "no_weights"
    broken.mkdir()
    shutil.copy(f"{hf_checkpoints['llama']}/config.json", broken / "config.json")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        models.from_pretrained(str(broken))
    wrong = tmp_path / "wrong_shape"
    shutil.copytree(hf_checkpoints["llama"], wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 64}))
    with pytest.raises(ValueError, match=r"mlp\.(gate|up|down)_proj\.weight has shape"):
        models.from_pretrained(str(wrong))
    gpt = tmp_path / "gpt2"
    shutil.copytree(hf_checkpoints["llama"], gpt)
    (gpt / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'"):
        models.from_pretrained(str(gpt))


def test_a_corrupt_safetensors_file_is_named_not_a_json_traceback(tmp_path):
    """A truncated or garbage model.safetensors: a ValueError naming the file, before any tensor is read."""
    from ieta_jax.models import checkpoint

    good = tmp_path / "good.safetensors"
    checkpoint.write_safetensors(str(good), [("w", (4, 4), np.float32)], lambda name: np.ones((4, 4), np.float32))
    data = good.read_bytes()
    assert checkpoint.SafetensorsFile(str(good))["w"].sum() == 16
    cases = {"head": (data[:40], "truncated"), "tiny": (data[:5], "truncated"),
             "tail": (data[:-4], "'w' has data_offsets [0, 64]; the file holds 60 data bytes"),
             "garbage": (data[:9] + b"}" + data[10:], "bad header"),
             "list": (len(b"[1]    ").to_bytes(8, "little") + b"[1]    ", "not a JSON object")}
    for name, (blob, needle) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(ValueError) as e:
            checkpoint.SafetensorsFile(str(path))
        assert str(e.value).startswith(f"{path} is not a valid safetensors file") and needle in str(e.value), name


def test_num_params_equals_transformers_count(hf_checkpoints):
    """The parameter count behind the benchmark's 6*N*T FLOPs equals transformers' own count."""
    import torch
    from transformers import AutoModelForCausalLM

    for name in ("llama", "qwen2", "llama3_tied", "mistral"):
        hf = AutoModelForCausalLM.from_pretrained(hf_checkpoints[name], dtype=torch.float32)
        assert models.load_config(hf_checkpoints[name]).num_params() == hf.num_parameters(), name
