"""Hosted models (OpenAI-compatible or Anthropic endpoints) as policies and as the AI judge."""
from ieta_jax.api.client import APIClient, APIError, Endpoint, Usage, parse_endpoint
from ieta_jax.api.policy import APIPolicy, chat_messages
from ieta_jax.api import judge

__all__ = ["APIClient", "APIError", "APIPolicy", "Endpoint", "Usage", "chat_messages", "judge", "parse_endpoint"]
