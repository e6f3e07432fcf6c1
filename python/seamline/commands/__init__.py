"""The commands of the `seamline` CLI, as library functions: each takes typed values (a request
dataclass and the `Session` it writes through), runs, and returns a report object; `render.emit`
prints the report and writes its files (JSON, Parquet, metrics). The CLI only parses arguments into
requests.

    common.py     exit codes, one-line error text, the per-seam loop, the report base class
    session.py    the output streams, scrubbed of the contract's secrets
    render.py     one renderer: the terminal text and one writer per output file
    check.py, freshness.py, lineage.py, repair.py, merge.py: the commands
"""
