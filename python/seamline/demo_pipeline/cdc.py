"""The pipeline's CDC hop: its own process of the Debezium launcher (services/debezium, the one
``scripts/services.sh`` runs) capturing the shop's products schema into Kafka.

A process of its own, on its own schema, publication, replication slot and topic prefix, so the fault
(the connector stopped, its slot dropped and recreated) never touches the shared CDC service. The slot
is created here, before the connector starts (``pg_create_logical_replication_slot``): creating a slot
waits for every transaction running in the cluster, which on a busy server outlasts the engine's own
start-up timeout; the connector then finds the slot and streams from it (``snapshot.mode=no_data``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from seamline.demo_pipeline.pg import sql
from seamline.exceptions import StoreUnavailableError

LAUNCHER_MAIN = "dev.seamline.services.SeamlineDebezium"
LAUNCHER_JAR = "seamline-debezium-0.1.0.jar"


def launcher_dir() -> Path:
    """Where the launcher is built: ``SEAMLINE_DEBEZIUM_DIR``, else services/debezium/target of the
    checkout this package runs from."""
    env = os.environ.get("SEAMLINE_DEBEZIUM_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "services" / "debezium" / "target"


def launcher_missing() -> str | None:
    """Why the launcher cannot run here (None: it can)."""
    java = os.environ.get("SEAMLINE_JAVA", "java")
    if shutil.which(java) is None:
        return f"no java ({java}) on PATH"
    jar = launcher_dir() / LAUNCHER_JAR
    if not jar.exists():
        return f"the Debezium launcher is not built ({jar}; scripts/services.sh up debezium builds it)"
    return None


class Connector:
    """One launcher process capturing schema ``schema`` into topics ``<prefix>.<schema>.<table>``
    through publication and slot ``slot``."""

    def __init__(
        self,
        dsn: str,
        bootstrap: str,
        workdir: Path,
        *,
        schema: str,
        slot: str,
        prefix: str,
        snapshot_mode: str = "no_data",
    ) -> None:
        self.dsn, self.bootstrap, self.workdir = dsn, bootstrap, workdir
        self.schema, self.slot, self.prefix = schema, slot, prefix
        #: Debezium's snapshot.mode on the next start: "no_data" streams only; "initial" first reads
        #: the captured tables' rows (op "r") when the connector has no stored offsets
        self.snapshot_mode = snapshot_mode
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    # -- the Postgres side ---------------------------------------------------------------------------

    def create_publication(self) -> None:
        sql(self.dsn, f"CREATE PUBLICATION {self.slot} FOR TABLES IN SCHEMA {self.schema}")

    def create_slot(self) -> None:
        """A new slot at the current WAL position (what the connector would create)."""
        sql(self.dsn, f"SELECT 1 FROM pg_create_logical_replication_slot('{self.slot}', 'pgoutput')")

    def drop_slot(self) -> None:
        sql(
            self.dsn,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{self.slot}' AND NOT active",
        )

    def slot_active(self) -> bool:
        return sql(self.dsn, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{self.slot}'") == [
            (True,)
        ]

    def forget_offsets(self) -> None:
        """A fresh connector: no stored position, so it streams from wherever its slot is."""
        (self.workdir / "offsets.dat").unlink(missing_ok=True)

    # -- the process -----------------------------------------------------------------------------------

    def _write_config(self) -> Path:
        url = urlsplit(self.dsn)
        props = {
            "seamline.kafka.bootstrap": self.bootstrap,
            "name": f"shop-cdc-{self.slot}",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(self.workdir / "offsets.dat"),
            "offset.flush.interval.ms": "200",
            "database.hostname": url.hostname or "127.0.0.1",
            "database.port": str(url.port or 5432),
            "database.user": url.username or "",
            "database.password": url.password or "",
            "database.dbname": url.path.lstrip("/"),
            "topic.prefix": self.prefix,
            "plugin.name": "pgoutput",
            "slot.name": self.slot,
            "publication.name": self.slot,
            "publication.autocreate.mode": "disabled",
            "schema.include.list": self.schema,
            "snapshot.mode": self.snapshot_mode,
            # starting the task on a loaded machine can outlast the engine's default (it then gives up)
            "task.management.timeout.ms": "600000",
            "decimal.handling.mode": "string",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
        }
        path = self.workdir / "engine.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        path.chmod(0o600)  # it holds the database password, if the DSN has one
        (self.workdir / "log4j2.properties").write_text(
            "status = error\nappender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {self.workdir / 'debezium.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n\nrootLogger.level = info\n"
            "rootLogger.appenderRef.file.ref = file\n"
        )
        return path

    def start(self, timeout: float = 180.0) -> None:
        """Start the launcher and wait until it holds its slot (streaming)."""
        props = self._write_config()
        lib = launcher_dir()
        cmd = [
            os.environ.get("SEAMLINE_JAVA", "java"),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # a short-lived process: start fast rather than peak
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{lib / LAUNCHER_JAR}:{lib / 'lib'}/*",
            LAUNCHER_MAIN,
            str(props),
        ]
        with open(self.workdir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.slot_active():
                return
            time.sleep(0.3)
        self.stop()
        raise StoreUnavailableError(f"Debezium: slot {self.slot} not active within {timeout:.0f} s")

    def check_alive(self) -> None:
        """Raise with the launcher's last output when its process has exited."""
        if self.process is not None and self.process.poll() is not None:
            said = [
                ln
                for ln in (self.workdir / "stdout.log").read_text(errors="replace").splitlines()
                if ln.strip()
            ]
            last = said[-1] if said else "no output"
            raise StoreUnavailableError(
                f"the Debezium launcher exited ({self.process.returncode}): {last} (logs in {self.workdir})"
            )

    def stop(self) -> None:
        """Stop the launcher (its shutdown hook stores the offsets) and wait for its slot to be free."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        deadline = time.monotonic() + 30
        while self.slot_active() and time.monotonic() < deadline:  # the walsender exits a bit later
            time.sleep(0.2)

    def drop(self) -> None:
        """Stop and remove the slot and the publication (the topics are the pipeline's to drop)."""
        self.stop()
        self.drop_slot()
        sql(self.dsn, f"DROP PUBLICATION IF EXISTS {self.slot}")
