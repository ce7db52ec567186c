"""Exact, immutable domain types shared by every mode."""
