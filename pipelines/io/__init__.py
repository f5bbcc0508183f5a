"""Reading and writing: storage (local, gs://, s3://), input formats, record validation,
passthrough metadata and the shards' row schema. No Beam transforms here."""
