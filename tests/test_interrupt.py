"""Ctrl-C during a long reconcile: the native passes run with the GIL released, yet a SIGINT still
interrupts them promptly (the waiting thread checks for signals and tells the workers to stop)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SLOW_RECONCILE = """
import time, pyarrow as pa, seamline as sl

schema = pa.schema([("id", pa.int64()), ("v", pa.string())])

class Slow:
    # a source whose stream trickles: 1000 batches, 50 ms apart (about a minute in all)
    def describe(self): return "slow"
    def schema(self): return schema
    def pin(self): return sl.stores.protocols.AsOf("slow")
    def sample_keys(self, key, n): return None
    def estimated_rows(self): return 1000
    def close(self): pass
    def open(self, request):
        def batches():
            for i in range(1000):
                time.sleep(0.05)
                yield pa.record_batch([pa.array([i], pa.int64()), pa.array(["x"])], schema=schema)
        return [pa.RecordBatchReader.from_batches(schema, batches())]

print("started", flush=True)
sl.reconcile(Slow(), Slow(), key="id")
print("finished", flush=True)
"""


def test_sigint_interrupts_a_running_reconcile() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import seamline.stores.protocols\n" + SLOW_RECONCILE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.5)  # well inside the hash pass
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - sent
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    assert took < 5, f"took {took:.1f}s to stop"
