"""The lancedb store: reading (read.py) and repair writing (write.py)."""
