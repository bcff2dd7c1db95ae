"""Small helpers shared across the package (paths that may be local or on a bucket)."""
