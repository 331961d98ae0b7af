"""Model serving: prepared base models, and the vLLM server Chimera starts for a model set."""
