"""One small module per endpoint (as vLLM's ``entrypoints/openai/*/``): each a router and its request models,
with every check of its requests in one place; ``common`` holds what they share."""

from hyperadapt.serve.endpoints import adapters, chat, completions, health, models

ROUTERS = (completions.router, chat.router, models.router, adapters.router, health.router)

__all__ = ["ROUTERS"]
