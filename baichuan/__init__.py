"""baichuan: the Baichuan LLM family (Baichuan-7B/13B, Baichuan 2) end to end."""

__version__ = "0.1.0"
