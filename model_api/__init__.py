"""The model API: a causal LM behind an OpenAI-compatible HTTP API."""
