"""The outbox relay: publishes the outbox's unpublished events to Kafka, then marks them published.

Per batch, in one Postgres transaction: lock the oldest unpublished rows (``FOR UPDATE SKIP LOCKED``,
so relays can run side by side), publish them (keyed by the order, the event id also in a header),
wait for the broker's acknowledgement, mark them published, commit. A relay killed between the
acknowledgement and the commit leaves the rows unpublished, so the next run publishes them again:
at least once, never lost. Consumers dedupe on the event id.

Run as a process of its own to be killed at that exact point (the fault the pipeline injects):
``python -m seamline.demo_pipeline.relay SCHEMA TOPIC --batch N --kill-after-publish`` (the DSN and
the bootstrap servers come from SEAMLINE_PG_DSN and SEAMLINE_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

from seamline.demo_pipeline.pg import connect
from seamline.exceptions import StoreUnavailableError


class Relay:
    def __init__(self, dsn: str, bootstrap: str, outbox: str, topic: str) -> None:
        self.dsn, self.bootstrap, self.outbox, self.topic = dsn, bootstrap, outbox, topic

    def run(self, batch: int = 500, kill_after_publish: bool = False) -> int:
        """Publish until the outbox has nothing unpublished; the number of events published."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all"})
        published = 0
        with connect(self.dsn) as conn, conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT event_id, aggregate_id, type, payload, created_at FROM "
                    f"{self.outbox} WHERE published_at IS NULL ORDER BY created_at, event_id "
                    f"LIMIT {int(batch)} FOR UPDATE SKIP LOCKED"
                )
                rows = cur.fetchall()
                if not rows:
                    conn.commit()
                    return published
                for event_id, aggregate_id, kind, payload, created_at in rows:
                    value = {
                        "event_id": event_id,
                        "aggregate_id": aggregate_id,
                        "type": kind,
                        "payload": payload,
                        "created_at": created_at.isoformat(),
                    }
                    producer.produce(
                        self.topic,
                        key=str(aggregate_id).encode(),
                        value=json.dumps(value, separators=(",", ":")).encode(),
                        headers=[("event_id", event_id.encode())],
                    )
                if producer.flush(30):
                    raise StoreUnavailableError(f"relay: the broker did not acknowledge {len(rows)} event(s)")
                if kill_after_publish:  # the fault: published, acknowledged, never marked
                    os.kill(os.getpid(), signal.SIGKILL)
                cur.executemany(
                    f"UPDATE {self.outbox} SET published_at = clock_timestamp() WHERE event_id = $1",
                    [(r[0],) for r in rows],
                )
                conn.commit()
                published += len(rows)

    def run_and_get_killed(self, batch: int) -> int:
        """A relay process that publishes one batch and is killed (SIGKILL) before marking it; its
        exit status (-9)."""
        env = {**os.environ, "SEAMLINE_PG_DSN": self.dsn, "SEAMLINE_KAFKA_BOOTSTRAP": self.bootstrap}
        cmd = [
            sys.executable,
            "-m",
            __name__,
            self.outbox,
            self.topic,
            "--batch",
            str(batch),
            "--kill-after-publish",
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != -signal.SIGKILL:
            said = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise StoreUnavailableError(
                f"relay: expected to be killed, exited {done.returncode}: {said[-1] if said else 'no output'}"
            )
        return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seamline.demo_pipeline.relay", description=__doc__)
    parser.add_argument("outbox", help="the outbox table, schema.table")
    parser.add_argument("topic")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--kill-after-publish", action="store_true", help="die after publishing one batch")
    args = parser.parse_args(argv)
    relay = Relay(
        os.environ["SEAMLINE_PG_DSN"], os.environ["SEAMLINE_KAFKA_BOOTSTRAP"], args.outbox, args.topic
    )
    print(f"relay: published {relay.run(args.batch, args.kill_after_publish)} event(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
