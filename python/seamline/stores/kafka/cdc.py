"""The CDC hop's own state on the Postgres side: its logical replication slots.

A slot is where a connector's position lives. An inactive slot keeps WAL until it is consumed (the
disk fills); Postgres invalidates a slot that falls past ``max_slot_wal_keep_size`` (``wal_status``
``lost``), and a slot dropped and recreated starts at the current WAL position: either way the
changes in between never reach the topic. Freshness reports every logical slot with its lag in bytes
(``pg_current_wal_lsn() - confirmed_flush_lsn``) against a declared threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from seamline.exceptions import StoreUnavailableError
from seamline.stores._common import redact_url

_SLOTS = """
SELECT slot_name, plugin, database, active,
       COALESCE(wal_status, 'unknown') AS wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots
WHERE slot_type = 'logical'
ORDER BY slot_name
"""


@dataclass(frozen=True)
class SlotState:
    slot_name: str
    plugin: str
    database: str
    active: bool
    wal_status: str  # reserved | extended | unreserved | lost
    lag_bytes: int | None
    status: str  # pass | error
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replication_slots(dsn: str, error_bytes: int | None = None) -> list[SlotState]:
    """Every logical replication slot of the cluster; ``error`` when its WAL is lost, or when it
    lags more than ``error_bytes`` behind the current WAL position."""
    import adbc_driver_postgresql.dbapi as pgdb

    try:
        with pgdb.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(_SLOTS)
            rows = cur.fetchall()
    except Exception as exc:  # the driver's errors carry the server's reason on their first line
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailableError(f"postgres {redact_url(dsn)}: replication slots: {cause}") from None
    out = []
    for name, plugin, database, active, wal_status, lag in rows:
        status: str = "pass"
        reason: str | None = None
        if wal_status == "lost":
            status, reason = "error", "WAL lost: the slot can no longer deliver the changes it missed"
        elif error_bytes is not None and lag is not None and lag > error_bytes:
            status, reason = "error", f"{lag} bytes behind the current WAL position (limit {error_bytes})"
        out.append(SlotState(name, plugin, database, bool(active), wal_status, lag, status, reason))
    return out
