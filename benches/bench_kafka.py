"""Reading a Kafka topic with Seamline against the broker's own raw read.

What it measures
    A topic of N JSON events (default 5,000,000) in 6 partitions, keyed by product id (K keys,
    default 100,000), each value {"event_id", "id", "version", "name", "price", "in_stock"} (~110
    bytes), produced once by this script with confluent-kafka (lz4 batches) and reused while its
    end offsets still sum to N (--reload recreates it). Methods, each run a fresh process:

    java_consumer_perf  the broker's own tool, org.apache.kafka.tools.ConsumerPerformance from
                        services/kafka/target/lib (--messages N, to nowhere): its own fetch time (the
                        work) and the wall time of the process (JVM start included)
    python_raw          confluent-kafka's Python client: assign every partition, consume()
                        batches of 20,000 until the end offsets, touching nothing (no value, key or
                        offset is looked at): that client's floor (a Python object per message)
    rust_raw            seamline._core.kafka_fetch_stream (the Rust reader: librdkafka driven from
                        Rust) up to the end offsets, the Arrow batches counted, nothing decoded
    seamline_events     sl.kafka(bootstrap, topic).pin() with the default (Rust) reader: every
                        message as a row (message columns + the value's fields), values decoded
                        by pyarrow.json in batches
    seamline_fold       sl.kafka(bootstrap, topic, key_field="id", fold="latest",
                        version="version").pin(): the state per key (K rows), with the stream
                        health (out-of-order versions, replays, gaps)
    *_confluent         the same two with reader="confluent" (the confluent-kafka path; run in the
                        first repeat only, they are slow)

    Two times per method: "work s" is the measured work alone (the child's timed call, imports
    excluded; ConsumerPerformance's own fetch time, JVM start and group join excluded) and
    "process s" the whole process as the parent waited for it (imports, JVM start included); each
    ratio compares like with like. CPU s/M is the child's whole CPU time (user + sys, every
    thread, imports and JVM start included) per million events, the number to compare while other
    work shares the machine; peak MB is the child's VmHWM (the whole process). The fold's
    memory is also measured on a topic of N/5 events with the same keys: flat in events means the
    two peaks are close. Every method runs --repeat times (default 3), interleaved; medians are
    reported with the 1-minute load average (2 cores, shared).

Run (from the repository root, Kafka up: scripts/services.sh up kafka):

    eval "$(scripts/services.sh env)"
    .venv/bin/python benches/bench_kafka.py --events 200000        # quick check
    .venv/bin/python benches/bench_kafka.py                        # 5M events
    .venv/bin/python benches/bench_kafka.py --repeat 1 --methods java_consumer_perf,rust_raw,seamline_fold
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benches" / "out"
PARTITIONS = 6


def topic_name(events: int, keys: int) -> str:
    return f"bench-kafka-{events}-{keys}"


def end_offsets(bootstrap: str, topic: str) -> int | None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


def produce(bootstrap: str, topic: str, events: int, keys: int, reload: bool) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    have = end_offsets(bootstrap, topic)
    if have == events and not reload:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if have is not None:
        admin.delete_topics([topic])[topic].result(timeout=60)
        time.sleep(2)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=60)
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1 << 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    rng = random.Random(1)
    version = [0] * keys
    t0 = time.perf_counter()
    for i in range(events):
        k = rng.randrange(keys)
        version[k] += 1
        value = (
            f'{{"event_id":"e{i}","id":{k},"version":{version[k]},"name":"product {k}",'
            f'"price":{(k % 997) + 0.99},"in_stock":{"true" if i % 3 else "false"}}}'
        )
        while True:
            try:
                p.produce(topic, key=str(k).encode(), value=value.encode())
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(600)
    print(f"produced {events} events to {topic} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(method: str, bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    """One measured run, in this (fresh) process (its CPU time is measured by the parent)."""
    if method == "python_raw":
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-raw",
                "enable.auto.commit": False,
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 16 << 20,
            }
        )
        t0 = time.perf_counter()
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        todo, n = set(parts), 0
        while todo:
            msgs = c.consume(num_messages=20_000, timeout=0.5)
            n += len(msgs)
            for tp in c.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= highs[tp.partition]:
                    todo.discard(tp.partition)
        seconds = time.perf_counter() - t0
        c.close()
        return {"seconds": seconds, "rows": n, "peak_mb": peak_mb()}
    if method == "rust_raw":
        import pyarrow as pa

        from seamline._core import kafka_fetch_stream
        from seamline.malloc_policy import set_malloc_policy
        from seamline.stores.kafka.store import KafkaStore

        set_malloc_policy("stream")  # the malloc policy the source reads with
        t0 = time.perf_counter()
        store = KafkaStore(bootstrap)
        c = store.consumer()
        offsets = store.end_offsets(c, topic)
        c.close()
        stream = kafka_fetch_stream(
            bootstrap, topic, [(o.partition, o.low, o.high) for o in offsets], config=[], what="bench"
        )
        n = sum(b.num_rows for b in pa.RecordBatchReader.from_stream(stream))
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "rows": n, "peak_mb": peak_mb()}
    import seamline as sl

    kwargs: dict[str, Any] = {}
    if method.startswith("seamline_fold"):
        kwargs = {"key_field": "id", "fold": "latest", "version": "version"}
    if method.endswith("_confluent"):
        kwargs["reader"] = "confluent"
    t0 = time.perf_counter()
    src = sl.kafka(bootstrap, topic, **kwargs)
    as_of = src.pin()
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": as_of.detail["rows"],
        "messages": as_of.detail["messages"],
        "health": as_of.detail["health"],
        "peak_mb": peak_mb(),
    }


def run_java(bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    cmd = [
        "java",
        "-Xmx1g",
        "-cp",
        f"{REPO / 'services' / 'kafka' / 'target' / 'lib'}/*",
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(events),
        "--group",
        f"bench-perf-{time.time_ns()}",
        "--timeout",
        "60000",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header, values = lines[-2].split(", "), lines[-1].split(", ")
    stats = dict(zip(header, values, strict=False))
    fetch = float(stats.get("fetch.time.ms", "nan")) / 1000
    return {
        "seconds": fetch,  # the work alone, as the children's seconds (their imports excluded)
        "process_seconds": seconds,
        "fetch_seconds": fetch,
        "rows": int(stats.get("data.consumed.in.nMsg", 0)),
        "tool": stats,
    }


def children_cpu() -> float:
    """User + sys seconds of the children waited for so far."""
    t = os.times()
    return t.children_user + t.children_system


def measure(method: str, bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    cpu0 = children_cpu()
    if method == "java_consumer_perf":
        out = run_java(bootstrap, topic, events)
    else:
        cmd = [sys.executable, __file__, "--child", method, "--topic", topic, "--events", str(events)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        process_seconds = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"{method} failed:\n{res.stderr[-3000:]}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["process_seconds"] = process_seconds
    out["cpu_seconds"] = children_cpu() - cpu0
    out["load_avg_1m"] = load
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--topic")
    ap.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    args = ap.parse_args()
    bootstrap = os.environ.get("SEAMLINE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise SystemExit('SEAMLINE_KAFKA_BOOTSTRAP is not set: eval "$(scripts/services.sh env)"')
    if args.child:
        print(json.dumps(child(args.child, bootstrap, args.topic, args.events)))
        return

    topic = topic_name(args.events, args.keys)
    small_events = args.events // 5
    small = topic_name(small_events, args.keys)
    produce(bootstrap, topic, args.events, args.keys, args.reload)
    produce(bootstrap, small, small_events, args.keys, args.reload)

    methods = [
        "java_consumer_perf",
        "python_raw",
        "rust_raw",
        "seamline_events",
        "seamline_fold",
        "seamline_events_confluent",
        "seamline_fold_confluent",
    ]
    if args.methods:
        wanted = args.methods.split(",")
        unknown = sorted(set(wanted) - set(methods))
        if unknown:
            raise SystemExit(f"unknown methods: {', '.join(unknown)} (known: {', '.join(methods)})")
        methods = [m for m in methods if m in wanted]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    runs["seamline_fold_small"] = []
    for r in range(args.repeat):
        for m in methods:
            if m.endswith("_confluent") and r > 0:
                continue
            res = measure(m, bootstrap, topic, args.events)
            runs[m].append(res)
            print(
                f"run {r + 1} {m}: {res['seconds']:.2f}s cpu {res['cpu_seconds']:.2f}s rows {res['rows']} "
                f"(load {res['load_avg_1m']:.1f})",
                file=sys.stderr,
            )
        if "seamline_fold" in methods:
            runs["seamline_fold_small"].append(measure("seamline_fold", bootstrap, small, small_events))

    def med(m: str, k: str = "seconds") -> float:
        return statistics.median(x[k] for x in runs[m])

    def ratio(m: str, k: str, base: str) -> str:
        return f"{med(m, k) / med(base, k):.2f}" if runs.get(base) else "-"

    print(
        f"\n{args.events:,} JSON events, {PARTITIONS} partitions, {args.keys:,} keys; "
        f"median of {args.repeat}\n"
    )
    # two fair comparisons: the measured work (ConsumerPerformance's fetch time, the children's
    # timed call) and the whole process (JVM start and the imports included)
    print(
        "| method | work s | events/s | x ConsumerPerformance (work) | x rust_raw (work) "
        "| process s | x ConsumerPerformance (process) | CPU s/M | peak MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        s = med(m)
        cpu = med(m, "cpu_seconds") / args.events * 1e6
        peak = "-" if m == "java_consumer_perf" else f"{med(m, 'peak_mb'):.0f}"
        print(
            f"| {m} | {s:.2f} | {args.events / s:,.0f} | {ratio(m, 'seconds', 'java_consumer_perf')} "
            f"| {ratio(m, 'seconds', 'rust_raw')} | {med(m, 'process_seconds'):.2f} "
            f"| {ratio(m, 'process_seconds', 'java_consumer_perf')} | {cpu:.2f} | {peak} |"
        )
    if runs["seamline_fold_small"]:
        print(
            f"seamline_fold peak: {med('seamline_fold', 'peak_mb'):.0f} MB at {args.events:,} events, "
            f"{med('seamline_fold_small', 'peak_mb'):.0f} MB at {small_events:,} (same {args.keys:,} keys)"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"bench_kafka_{args.events}.json"
    path.write_text(
        json.dumps(
            {"events": args.events, "keys": args.keys, "partitions": PARTITIONS, "runs": runs}, indent=1
        )
    )
    print(f"\nruns: {path}")


if __name__ == "__main__":
    main()
