"""Tiny blip models (being written)."""
