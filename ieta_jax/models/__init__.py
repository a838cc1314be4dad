"""Llama-family models (Llama, Qwen2, Mistral) in Flax NNX, with Hugging Face checkpoints in and out."""
from ieta_jax.models.checkpoint import from_pretrained, load_config, load_tokenizer, save_pretrained
from ieta_jax.models.config import ATTENTION_IMPLS, ModelConfig
from ieta_jax.models.llama import (CausalLM, KVCache, RewardModel, last_token_index, positions_from_mask,
                                  score_index)

__all__ = ["ATTENTION_IMPLS", "ModelConfig", "CausalLM", "RewardModel", "KVCache", "from_pretrained", "save_pretrained",
           "load_config", "load_tokenizer", "last_token_index", "positions_from_mask", "score_index"]
