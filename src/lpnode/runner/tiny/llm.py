"""Tiny llm models (being written)."""
