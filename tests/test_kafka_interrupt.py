"""Ctrl-C while a Kafka topic is read, against the real broker: the Rust reader (events) and the
Rust fold (``fold="latest"``) stop promptly with KeyboardInterrupt from the API, and the CLI exits
130 with its one line, never a traceback.

The read is made slow on purpose, so that the signal always lands mid-read (no race with the end of
the partitions): the topic is written in many small batches and the reader asks the broker for more
bytes than a fetch may return (``fetch.min.bytes`` above ``max.partition.fetch.bytes``), so the broker
holds every fetch for ``fetch.wait.max.ms`` and hands over about one batch a time: the whole topic
would take minutes. The child says when it starts reading; the signal comes seconds later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka_topics import Topics

pytestmark = pytest.mark.services

# every fetch held by the broker for 500 ms, returning about one small batch per partition
SLOW_FETCH = {"fetch.min.bytes": 100_000_000, "fetch.wait.max.ms": 500, "max.partition.fetch.bytes": 1024}
MESSAGES = 4000  # in batches of a few messages: ~1000 fetches, minutes of reading

CHILD = """
import sys, seamline as sl
bootstrap, topic, mode, slow = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
kwargs = {"key_field": "id", "fold": "latest", "version": "v"} if mode == "fold" else {}
src = sl.kafka(bootstrap, topic, config=slow, **kwargs)
assert src.reader == "rust"
print("reading", flush=True)
try:
    src.pin()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("finished", flush=True)
"""

CONTRACT = """
version: 1
stores:
  bus: {type: kafka, bootstrap: "BOOTSTRAP", config: CONFIG}
seams:
  - name: topic_state
    source: {store: bus, topic: "TOPIC", key_field: id, fold: latest, version: v}
    target: {store: bus, topic: "TOPIC", key_field: id, fold: latest, version: v}
    key: id
"""


def _slow_topic(topics: Topics) -> str:
    topic = topics.create(partitions=2)
    p = topics.new_producer(**{"linger.ms": 0, "batch.size": 256})
    for i in range(MESSAGES):
        p.produce(topic, key=str(i % 50).encode(), value=b'{"id": %d, "v": %d}' % (i % 50, i))
        if i % 100 == 0:
            p.flush(30)  # small batches: nothing accumulates
    assert p.flush(30) == 0
    return topic


def _interrupt(proc: subprocess.Popen[str], wait_for: str | None) -> tuple[float, str, str]:
    """Signal `proc` a few seconds after it said `wait_for` (or after its start): well into the read.
    Returns (seconds from the signal to its exit, stdout, stderr)."""
    assert proc.stdout is not None
    if wait_for is not None:
        assert proc.stdout.readline().strip() == wait_for
    time.sleep(3)  # the pin (end offsets) is done; the read has minutes to go
    assert proc.poll() is None, "the read ended before the signal: the topic is not slow enough"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return time.monotonic() - sent, out, err


@pytest.mark.parametrize("mode", ["events", "fold"])
def test_sigint_mid_read_is_a_prompt_keyboard_interrupt(topics: Topics, mode: str) -> None:
    topic = _slow_topic(topics)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, topics.bootstrap, topic, mode, repr(SLOW_FETCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    took, out, err = _interrupt(proc, "reading")
    assert proc.returncode == 130 and out.strip() == "interrupted", (proc.returncode, out, err)
    assert "Traceback" not in err and "panicked" not in err, err
    assert took < 5, f"took {took:.1f}s to stop"


def test_sigint_mid_read_exits_130_from_the_cli(topics: Topics, tmp_path: Path) -> None:
    topic = _slow_topic(topics)
    config = "{" + ", ".join(f"{k}: {v}" for k, v in SLOW_FETCH.items()) + "}"
    contract = tmp_path / "contract.yaml"
    contract.write_text(
        CONTRACT.replace("BOOTSTRAP", topics.bootstrap).replace("TOPIC", topic).replace("CONFIG", config)
    )
    seamline = Path(sys.executable).parent / "seamline"
    proc = subprocess.Popen(
        [str(seamline), "check", str(contract)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    took, out, err = _interrupt(proc, None)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "interrupted" in err and "Traceback" not in err and "panicked" not in err, err
    assert took < 5, f"took {took:.1f}s to stop"
