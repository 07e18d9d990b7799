"""Tiny vits models (being written)."""
