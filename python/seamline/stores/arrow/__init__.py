"""In-memory Arrow tables and Parquet files: read-only sides."""
