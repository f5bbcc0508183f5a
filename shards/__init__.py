"""gradum shards."""
