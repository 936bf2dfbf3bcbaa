"""Inference: the Ollama client, the built-in Ollama-compatible model server, model routing."""
