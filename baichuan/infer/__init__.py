"""Inference: the batching engine (engine.py), its sampler (sampling.py), and the OpenAI-compatible
server with its web chat page (server.py, web/)."""
