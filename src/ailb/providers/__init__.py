"""One module per upstream kind, all behind the `Provider` interface."""

from __future__ import annotations

from ailb.config import DeploymentConfig, Secret
from ailb.providers.base import Provider


def build_provider(config: DeploymentConfig, api_key: Secret | None) -> Provider:
    # Imported here so a deployment kind costs nothing until it is configured.
    if config.provider == "openai":
        from ailb.providers.openai import OpenAIProvider

        return OpenAIProvider(config, api_key)
    if config.provider == "anthropic":
        from ailb.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config, api_key)
    if config.provider == "ollama":
        from ailb.providers.ollama import OllamaProvider

        return OllamaProvider(config, api_key)
    from ailb.providers.mock import MockProvider

    return MockProvider(config)
