"""The chat model behind `--llm PROVIDER:MODEL`, made with LangChain's `init_chat_model`, and the
start-up check of an OpenAI-compatible server (reachable, an API under the URL, the model known)."""
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


# The longest reply asked for. Answers are one or two sentences (~40 tokens); the bound is what
# stops a small model that loops ("… [1] [1] [1] …") from generating until the time-out (at
# 3-8 tokens/s for Qwen 0.5B on 2 shared cores, 96 tokens is 12-30 s).
MAX_REPLY_TOKENS = 96


def _split(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.strip().partition(":")
    provider = provider.strip().lower().replace("-", "_")
    if not sep or not provider or not model.strip():
        raise LLMConfigError(
            f"LLM spec must look like PROVIDER:MODEL (e.g. openai:gpt-4o-mini, ollama:llama3.1), got {spec!r}"
        )
    return provider, model.strip()


def make_chat_model(spec: str, timeout_s: float = 60, check_server: bool = True) -> BaseChatModel:
    """Create the chat model named by `spec` ("PROVIDER:MODEL", e.g. "openai:gpt-4o-mini",
    "ollama:llama3.1"), asking for at most MAX_REPLY_TOKENS per reply.

    The OpenAI provider reads the standard OPENAI_BASE_URL and OPENAI_API_KEY, so any
    OpenAI-compatible server works (llama.cpp server, vLLM, Ollama's /v1); with a base URL
    and no key, a placeholder key is used since local servers ignore it. `check_server`: with
    a base URL, first make sure the server answers there and serves the model (`check_openai_server`).
    """
    provider, model = _split(spec)
    kwargs: dict = {"temperature": 0}
    if provider in _TIMEOUT_KWARGS_PROVIDERS:
        kwargs.update(timeout=timeout_s, max_retries=0)
    elif provider == "ollama":
        kwargs.update(client_kwargs={"timeout": timeout_s}, num_predict=MAX_REPLY_TOKENS,
                      validate_model_on_init=check_server)
    base_url = os.environ.get("OPENAI_BASE_URL") if provider == "openai" else None
    if provider == "openai" and base_url:
        # langchain-openai sends `max_tokens` as `max_completion_tokens`, which compatible servers
        # (llama-cpp-python 0.3, older vLLM and Ollama) ignore: they then generate until the
        # context is full. They all read `max_tokens`.
        kwargs["extra_body"] = {"max_tokens": MAX_REPLY_TOKENS}
        if not os.environ.get("OPENAI_API_KEY"):
            kwargs["api_key"] = "unused"
    elif provider in _TIMEOUT_KWARGS_PROVIDERS:
        kwargs["max_tokens"] = MAX_REPLY_TOKENS
    if check_server and base_url:
        check_openai_server(base_url, model, os.environ.get("OPENAI_API_KEY") or "unused", timeout_s)
    try:
        return init_chat_model(model, model_provider=provider, **kwargs)
    except ImportError as e:
        if provider in _EXTRAS:
            extra, package = _EXTRAS[provider]
            hint = f"pip install 'qabot[{extra}]' (in a checkout: pip install -e '.[{extra}]', or pip install {package})"
        else:
            hint = f"pip install langchain-{provider.replace('_', '-')}"
        raise LLMConfigError(f"LLM provider {provider!r} is not installed: {hint}") from e
    except Exception as e:  # unknown provider, missing API key, bad option
        raise LLMConfigError(f"cannot set up LLM {spec!r}: {one_line(e)}") from e


def check_openai_server(base_url: str, model: str, api_key: str, timeout_s: float) -> None:
    """One GET of {base_url}/models: LLMConfigError (one line) when nothing answers at the URL,
    when no OpenAI-compatible API is there (the usual cause: the URL lacks its /v1), or when the
    server lists its models and `model` is not one of them."""
    import httpx  # a dependency of openai, so there whenever this provider is

    url = base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=min(timeout_s, 10))
    except httpx.HTTPError as e:
        raise LLMConfigError(f"the LLM server at {base_url} (OPENAI_BASE_URL) is not reachable: {one_line(e)}") from None
    if response.status_code in (401, 403):
        raise LLMConfigError(f"the LLM server at {base_url} refused the API key (OPENAI_API_KEY): "
                             f"HTTP {response.status_code}")
    listed = None
    if response.status_code == 200:
        try:
            listed = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            listed = None
    if listed is None:
        hint = "; OpenAI-compatible servers usually end in /v1" if not base_url.rstrip("/").endswith("/v1") else ""
        raise LLMConfigError(f"no OpenAI-compatible API at {base_url} (OPENAI_BASE_URL): GET {url} gave "
                             f"HTTP {response.status_code}{hint}")
    if listed and model not in listed:
        raise LLMConfigError(f"the LLM server at {base_url} has no model {model!r}; it serves: " + ", ".join(listed))
