"""One package per store: the store object (configuration, connection, errors, what it shows of itself),
its reader (``read.py``: the source) and its repair writer (``write.py``)."""
