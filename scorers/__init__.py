"""gradum scorers."""
