"""Clients that answer prompts: in-process transformers, and OpenAI-compatible servers."""

from .base import Answer, Client, Messages
from .local import TransformersClient
from .openai_compat import OPENROUTER_URL, OpenAIClient, OpenRouterClient

__all__ = ["Answer", "Client", "Messages", "OPENROUTER_URL", "OpenAIClient", "OpenRouterClient", "TransformersClient"]
