"""The optional LLM answerer: provider.py (the chat model), prompts.py (what it is shown),
verify.py (what of its reply is kept), answerer.py (`LLMAnswerer`, under a deadline)."""
