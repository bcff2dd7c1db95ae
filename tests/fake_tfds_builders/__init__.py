"""Tiny fake TFDS builders for the input-pipeline tests (builders must live in a package)."""
