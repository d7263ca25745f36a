"""Evaluation: benchmarks and tokenizer measurements."""
