"""gradum sampler."""
