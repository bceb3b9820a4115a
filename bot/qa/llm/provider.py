"""The chat model behind `--llm PROVIDER:MODEL`, made with LangChain's `init_chat_model`."""
from __future__ import annotations

import os

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel

from bot.errors import LLMConfigError, one_line

# Providers whose chat model class accepts `timeout` and `max_retries`; other providers get
# no client-side settings (unknown keyword arguments would be sent to their API) and rely on
# the deadline LLMAnswerer enforces itself.
_TIMEOUT_KWARGS_PROVIDERS = {"openai", "azure_openai", "anthropic", "groq", "mistralai", "deepseek", "xai"}


# Providers with an optional-dependency extra in pyproject: provider -> (extra, package).
_EXTRAS = {
    "openai": ("openai", "langchain-openai"),
    "azure_openai": ("openai", "langchain-openai"),
    "ollama": ("ollama", "langchain-ollama"),
}


def make_chat_model(spec: str, timeout_s: float = 60) -> BaseChatModel:
    """Create the chat model named by `spec` ("PROVIDER:MODEL", e.g. "openai:gpt-4o-mini",
    "ollama:llama3.1").

    The OpenAI provider reads the standard OPENAI_BASE_URL and OPENAI_API_KEY, so any
    OpenAI-compatible server works (llama.cpp server, vLLM, Ollama's /v1); with a base URL
    and no key, a placeholder key is used since local servers ignore it.
    """
    provider, sep, model = spec.strip().partition(":")
    provider = provider.strip().lower().replace("-", "_")
    if not sep or not provider or not model.strip():
        raise LLMConfigError(
            f"LLM spec must look like PROVIDER:MODEL (e.g. openai:gpt-4o-mini, ollama:llama3.1), got {spec!r}"
        )
    kwargs: dict = {"temperature": 0}
    if provider in _TIMEOUT_KWARGS_PROVIDERS:
        kwargs.update(timeout=timeout_s, max_retries=0)
    elif provider == "ollama":
        kwargs["client_kwargs"] = {"timeout": timeout_s}
    if provider == "openai" and os.environ.get("OPENAI_BASE_URL") and not os.environ.get("OPENAI_API_KEY"):
        kwargs["api_key"] = "unused"
    try:
        return init_chat_model(model.strip(), model_provider=provider, **kwargs)
    except ImportError as e:
        if provider in _EXTRAS:
            extra, package = _EXTRAS[provider]
            hint = f"pip install 'qabot[{extra}]' (in a checkout: pip install -e '.[{extra}]', or pip install {package})"
        else:
            hint = f"pip install langchain-{provider.replace('_', '-')}"
        raise LLMConfigError(f"LLM provider {provider!r} is not installed: {hint}") from e
    except Exception as e:  # unknown provider, missing API key, bad option
        raise LLMConfigError(f"cannot set up LLM {spec!r}: {one_line(e)}") from e
