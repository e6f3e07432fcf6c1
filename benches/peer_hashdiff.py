"""Run one peer's hashdiff (reladiff or data-diff) on two Postgres tables; print one JSON line.

Run by bench_postgres.py with the peer's own venv interpreter (benches/.venv-reladiff,
benches/.venv-datadiff), never with the project venv:

    benches/.venv-reladiff/bin/python benches/peer_hashdiff.py reladiff  DSN SRC DST COLS DRIFT
    benches/.venv-datadiff/bin/python benches/peer_hashdiff.py data_diff DSN SRC DST COLS DRIFT

SRC and DST are schema-qualified tables (public.bench_src public.bench_dst), COLS the comma-separated
compared non-key columns, DRIFT the table of injected drift (id, kind) that the differing keys are
checked against (after the timed region).

Both are driven through their Python API with their defaults (bisection factor 32, threshold 16384,
one connection per database, threaded=True with max_threadpool_size=1 -- what their CLIs do with no
-j) and algorithm=hashdiff. The data-diff 0.11.2 CLI does not start next to dbt-core 1.8 (pydantic 2:
"`regex` is removed. use `pattern` instead" at import of data_diff.dbt), its Python API does.

Counting: the diff yields ('-', row) for a row only in table1 or whose table1 version differs, and
('+', row) for a row only in table2 or whose table2 version differs. So
    '-' rows = missing + changed,  '+' rows = extra + changed,  distinct keys = missing + extra + changed.
The set of distinct differing keys is what is compared with Seamline (and with the injected drift).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from urllib.parse import unquote, urlsplit


def vmhwm_mb() -> float:
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    module, dsn, table1, table2, cols, drift_table = sys.argv[1:7]
    columns = tuple(cols.split(","))
    started = time.perf_counter()
    mod = importlib.import_module(module)
    db: str | dict[str, object] = dsn
    if module == "data_diff":
        # data-diff 0.11.2 requires a password in the URI (KeyError: 'password' in create_connection);
        # the bench cluster trusts local connections, so pass the same parameters as a dict.
        parts = urlsplit(dsn)
        db = {
            "driver": "postgresql",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "user": parts.username,
            "password": unquote(parts.password or ""),
            "database": parts.path.lstrip("/"),
        }
    t1 = mod.connect_to_table(db, tuple(table1.split(".")), "id")
    t2 = mod.connect_to_table(db, tuple(table2.split(".")), "id")
    kw = {}
    if module == "reladiff":
        # reladiff 0.6.0 sorts the differing rows by the whole row tuple and fails on a NULL against a
        # value in the same key ("'<' not supported between instances of 'NoneType' and 'str'");
        # --skip-sort-results / skip_sort_results=True avoids it (the order is irrelevant here).
        kw["skip_sort_results"] = True
    diff = mod.diff_tables(
        t1, t2, key_columns=("id",), extra_columns=columns, algorithm=mod.Algorithm.HASHDIFF, **kw
    )
    minus: set[int] = set()
    plus: set[int] = set()
    rows = {"-": 0, "+": 0}
    for sign, row in diff:
        rows[sign] += 1
        (minus if sign == "-" else plus).add(int(row[0]))
    seconds = time.perf_counter() - started
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, kind FROM {drift_table}")
        expected = dict(cur.fetchall())
    changed = minus & plus
    found = {**{k: "missing" for k in minus - plus}, **{k: "extra" for k in plus - minus}}
    found.update({k: "changed" for k in changed})
    print(
        json.dumps(
            {
                "seconds": seconds,
                "minus_rows": rows["-"],
                "plus_rows": rows["+"],
                "distinct_keys": len(minus | plus),
                "missing": len(minus - plus),
                "extra": len(plus - minus),
                "changed": len(changed),
                "matches_drift": found == expected,
                "version": getattr(mod, "__version__", None),
                "peak_mb": vmhwm_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
