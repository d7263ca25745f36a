"""The data stage: raw bilingual text -> clean, deduplicated, mixed, tokenized shards (pipeline.py),
and the pretraining loader over those shards (loader.py)."""
