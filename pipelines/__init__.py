"""gradum pipelines."""
