"""Model configuration for the Llama family, and its mapping to and from Hugging Face `config.json`.

One dataclass covers Llama 1/2/3 (incl. CodeLlama and Llama-3 rope scaling), Qwen2/Qwen2.5 (q/k/v bias) and
Mistral (sliding window). `from_hf` accepts both the transformers<5 layout (`rope_theta` + `rope_scaling`) and the
transformers>=5 layout (`rope_parameters`); `to_hf` writes a dict that either version loads.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")
SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "llama3")
_ARCHITECTURES = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral"}
ATTENTION_IMPLS = ("auto", "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters plus the parameter and compute dtypes.

    `dtype` is the compute dtype of matmuls and activations; `param_dtype` is the storage dtype of the weights.
    RMSNorm statistics, softmax and the returned logits are always float32.
    `attention`: how full-sequence attention (training, scoring, a prompt's prefill without a cache) is computed.
    "xla": two einsums and a float32 softmax, the [T, S] scores materialised (kept for the backward pass); "cudnn":
    cuDNN's fused flash attention (GPU, bf16/fp16 only; the scores are never stored, so activation memory grows
    linearly in the sequence); "auto" (default): cudnn where it applies (a GPU backend, bf16/fp16 compute, a head dim
    cuDNN supports), xla elsewhere. Not part of the HF config; decode steps always use the xla path.
    """

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "llama3"|"linear"|"dynamic", "factor": ..., ...}
    attention_bias: bool = False  # q/k/v bias (Qwen2 always has it)
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None  # per layer "full_attention" | "sliding_attention"
    model_type: str = "llama"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    dtype: str = "float32"
    param_dtype: str = "float32"
    attention: str = "auto"

    def __post_init__(self):
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={self.attention!r}; expected one of {ATTENTION_IMPLS}")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"hidden_size={self.hidden_size} not divisible by "
                                 f"num_attention_heads={self.num_attention_heads}; set head_dim")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.rope_scaling is not None:
            rope_type = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise ValueError(f"unsupported rope_scaling type {rope_type!r}; supported: {SUPPORTED_ROPE_TYPES}")
            scaling = {k: v for k, v in self.rope_scaling.items() if k not in ("type", "rope_theta")}
            scaling["rope_type"] = rope_type
            object.__setattr__(self, "rope_scaling", None if rope_type == "default" else scaling)
        if self.layer_types is not None:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
            if len(self.layer_types) != self.num_hidden_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for "
                                 f"{self.num_hidden_layers} layers")
        for name in ("dtype", "param_dtype"):
            np.dtype(_canonical_dtype(getattr(self, name)))  # fail early on a bad dtype name
            object.__setattr__(self, name, _canonical_dtype(getattr(self, name)))

    def __hash__(self):  # rope_scaling is a dict; the config is a static (jit-hashed) attribute of the model
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    # ------------------------------------------------------------------ derived
    def layer_window(self, layer: int) -> int | None:
        """Sliding-window size of `layer`, or None for full attention."""
        if self.sliding_window is None:
            return None
        if self.layer_types is not None and self.layer_types[layer] != "sliding_attention":
            return None
        return int(self.sliding_window)

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count (the figure used for 6*N*T FLOP estimates)."""
        h, d = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if self.attention_bias else 0)
        mlp = 3 * h * self.intermediate_size + (2 * self.intermediate_size + h if self.mlp_bias else 0)
        layers = self.num_hidden_layers * (attn + mlp + 2 * h) + h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return layers + (emb if include_embedding else 0)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF mapping
    @classmethod
    def from_hf(cls, hf: dict[str, Any] | Any, **overrides) -> "ModelConfig":
        """Builds a config from a HF `config.json` dict (or a `PretrainedConfig`)."""
        if not isinstance(hf, dict):
            hf = hf.to_dict()
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {model_type!r} in config.json; "
                             f"supported: {SUPPORTED_MODEL_TYPES}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {hf['hidden_act']!r}; only 'silu' (SwiGLU) is implemented")
        rope_params = dict(hf.get("rope_parameters") or {})
        legacy_scaling = hf.get("rope_scaling")
        if legacy_scaling:
            rope_params.update(legacy_scaling)
        rope_theta = float(rope_params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
        if rope_params.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported")
        rope_type = rope_params.get("rope_type", rope_params.get("type", "default"))
        sliding_window, layer_types = None, None
        if model_type == "mistral":
            sliding_window = hf.get("sliding_window")
        elif model_type == "qwen2" and hf.get("use_sliding_window", False):
            sliding_window = hf.get("sliding_window")
            layer_types = hf.get("layer_types") or tuple(
                "sliding_attention" if i >= hf.get("max_window_layers", 28) else "full_attention"
                for i in range(hf["num_hidden_layers"]))
        kwargs = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_hidden_layers=hf["num_hidden_layers"],
            num_attention_heads=hf["num_attention_heads"],
            num_key_value_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"),
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=rope_theta,
            rope_scaling=None if rope_type == "default" else rope_params,
            attention_bias=True if model_type == "qwen2" else bool(hf.get("attention_bias", False)),
            mlp_bias=bool(hf.get("mlp_bias", False)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            sliding_window=sliding_window,
            layer_types=tuple(layer_types) if layer_types else None,
            model_type=model_type,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
            initializer_range=hf.get("initializer_range", 0.02),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_hf(self) -> dict[str, Any]:
        """A `config.json` dict that transformers 4.x and 5.x load as the same architecture."""
        arch = _ARCHITECTURES[self.model_type]
        rope_parameters = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling:
            rope_parameters.update(self.rope_scaling)
        out = {
            "architectures": [f"{arch}ForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "rope_parameters": rope_parameters,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
            "dtype": self.param_dtype,
            "use_cache": True,
        }
        if self.model_type == "llama":
            out.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias)
        elif self.model_type == "mistral":
            out["sliding_window"] = self.sliding_window
        elif self.model_type == "qwen2":
            out["use_sliding_window"] = self.sliding_window is not None
            out["sliding_window"] = self.sliding_window
            if self.layer_types is not None:
                out["layer_types"] = list(self.layer_types)
                out["max_window_layers"] = next(
                    (i for i, t in enumerate(self.layer_types) if t == "sliding_attention"), self.num_hidden_layers)
        return out

    # ------------------------------------------------------------------ rotary
    def rope_inv_freq(self, seq_len=None):
        """Inverse rotary frequencies [head_dim/2] exactly as transformers computes them (float32).

        For "dynamic" scaling, `seq_len` (a traced scalar allowed) is max(position)+1 of the current call.
        """
        import jax.numpy as jnp

        dim = self.head_dim
        exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim
        base_inv_freq = 1.0 / (self.rope_theta ** exponents)
        scaling = self.rope_scaling or {"rope_type": "default"}
        rope_type = scaling["rope_type"]
        if rope_type == "default":
            return jnp.asarray(base_inv_freq, jnp.float32)
        if rope_type == "linear":
            return jnp.asarray(base_inv_freq / scaling["factor"], jnp.float32)
        if rope_type == "llama3":
            factor = scaling["factor"]
            low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
            old_len = scaling["original_max_position_embeddings"]
            low_wavelen, high_wavelen = old_len / low, old_len / high
            wavelen = 2 * math.pi / base_inv_freq
            inv = np.where(wavelen > low_wavelen, base_inv_freq / factor, base_inv_freq)
            smooth = (old_len / wavelen - low) / (high - low)
            smoothed = (1 - smooth) * inv / factor + smooth * inv
            medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
            return jnp.asarray(np.where(medium, smoothed, inv), jnp.float32)
        # dynamic NTK: the base grows once the sequence exceeds max_position_embeddings.
        factor = scaling["factor"]
        max_pos = self.max_position_embeddings
        if seq_len is None:
            return jnp.asarray(base_inv_freq, jnp.float32)
        seq_len = jnp.maximum(jnp.asarray(seq_len, jnp.float32), max_pos)
        base = self.rope_theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return (1.0 / (base ** jnp.asarray(exponents))).astype(jnp.float32)


def _canonical_dtype(name) -> str:
    import jax.numpy as jnp

    if not isinstance(name, str):
        return jnp.dtype(name).name
    aliases = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    name = aliases.get(name, name).replace("torch.", "")
    return jnp.dtype(name).name
