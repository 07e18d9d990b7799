"""Tiny sam2 models (being written)."""
