"""Tiny whisper models (being written)."""
