"""Embedded model serving: prepared checkpoints, an OpenAI-compatible server and its lifecycle."""
