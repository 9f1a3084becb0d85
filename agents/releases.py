"""Reading released aggregates back: for analysts, alerts and reports.

Everything downstream of the worker reads the aggregate topics through this
module, with ``isolation_level=read_committed`` (records of an aborted release
are never seen) and nothing but read access to ``aggregates.<stream>``.

  # Kafka aggregates.<stream> -> ReleaseRecord (schema privmon.release/1)
  #   -> pandas DataFrame: one row per (window, cell); per metric the value,
  #      its noise std and its 95% interval; the privacy metadata per row
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from privmon.agents.kafka_io import start_or_close
from privmon.privacy.records import ReleaseRecord, WindowComplete, decode_aggregate
from privmon.streams import kafka_client
from privmon.streams.config import DEFAULT_PATH, PipelineConfig, load_config, with_prefix

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("privmon.releases")

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time_ms(text: str, *, now_ms: int | None = None) -> int:
    """A point in time as ms since the epoch, from ``now``, ``90m``/``2h``/``7d`` ago
    (a leading ``-`` is allowed), or an ISO date/time (UTC unless it names an offset)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    text = text.strip()
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"time {text!r}: expected 'now', a time ago like 90m, 2h or 7d, or an ISO "
            "date/time like 2026-11-24 or 2026-11-24T08:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def aggregate_topic(stream: str, *, config: Path | str = DEFAULT_PATH,
                    topic_prefix: str = "") -> str:
    """The topic a stream is released to, by the pipeline config (and a prefix)."""
    cfg = load_config(config)
    if topic_prefix:
        cfg = with_prefix(cfg, topic_prefix)
    names = [p.name for p in cfg.policies]
    if stream not in names:
        raise ValueError(f"stream {stream!r}: expected one of {names} (from {config})")
    return cfg.topics.aggregate(stream)


def policy_mismatch(found: Iterable[str], config: PipelineConfig,
                    config_path: Path | str) -> str | None:
    """What to tell a reader whose records (or ledger entries) carry policy versions
    the config it was given does not define: they were released under another
    deployment's policy (e.g. the demo's read with the production config), so the
    config's streams, windows and budgets do not describe them. None if all match."""
    known = {p.policy_version for p in config.policies}
    foreign = sorted(set(found) - known)
    if not foreign:
        return None
    return (f"released under policy version(s) {foreign}, which {config_path} (version(s) "
            f"{sorted(known)}) does not define; if they are another deployment's, pass its "
            "--config (e.g. configs/demo.toml for the demo)")


def _decode(value: bytes, where: str) -> ReleaseRecord | WindowComplete | None:
    try:
        return decode_aggregate(value)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: not a release record (%s); skipped", where, exc)
        return None


def _in_range(record: ReleaseRecord, since_ms: int | None, until_ms: int | None) -> bool:
    return ((since_ms is None or record.window_start_ms >= since_ms)
            and (until_ms is None or record.window_start_ms < until_ms))


async def _start_at(consumer: AIOKafkaConsumer, parts: list[TopicPartition],
                    since_ms: int | None) -> None:
    """Seek to the first record produced at or after ``since_ms`` (a release is
    produced after its window ends, so no record of a later window comes earlier)."""
    if since_ms is None:
        await consumer.seek_to_beginning(*parts)
        return
    found = await consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
    ends = await consumer.end_offsets(parts)
    for tp in parts:
        consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])


async def topic_partitions(bootstrap: str, topics: Iterable[str],
                           options: Mapping[str, Any] | None = None) -> dict[str, set[int]]:
    """Partition ids of each topic from fresh cluster metadata (empty if it does not
    exist or this principal may not see it), with aiokafka's public admin API.

    The request asks for every topic: one naming a missing topic could create it on a
    broker with ``auto.create.topics.enable``, and a reader must not create topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await start_or_close(admin)
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    found = {d["topic"]: {p["partition"] for p in d["partitions"]}
             for d in described if d["error_code"] == 0}
    return {t: found.get(t, set()) for t in topics}


async def wait_for_topics(bootstrap: str, topics: Iterable[str], stop: asyncio.Event, *,
                          options: Mapping[str, Any] | None = None,
                          poll_s: float = 0.5) -> bool:
    """Wait until every topic exists (e.g. a worker starting up creates them); False if
    ``stop`` was set first."""
    wanted = set(topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **(options or {}))
    await start_or_close(consumer)
    try:
        while not stop.is_set():
            if wanted <= await consumer.topics():
                return True
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
            except TimeoutError:
                pass
        return False
    finally:
        await consumer.stop()


async def _consumer(bootstrap: str, topic: str,
                    options: Mapping[str, Any]) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, **options)
    await start_or_close(consumer)
    try:
        partitions = (await topic_partitions(bootstrap, [topic], options))[topic]
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap} (is the worker "
                              "running with the same config and topic prefix?)")
    except BaseException:
        await consumer.stop()
        raise
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    return consumer, parts


async def read_records(bootstrap: str, topic: str, *, since_ms: int | None = None,
                       until_ms: int | None = None,
                       options: Mapping[str, Any] | None = None) -> list[ReleaseRecord]:
    """Every committed release record of ``topic`` with window start in
    [since_ms, until_ms), read up to the end of the topic as of the call."""
    consumer, parts = await _consumer(bootstrap, topic, options or {})
    try:
        await _start_at(consumer, parts, since_ms)
        ends = await consumer.end_offsets(parts)
        out: list[ReleaseRecord] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                for msg in msgs:
                    rec = _decode(msg.value, f"{tp.topic}[{tp.partition}]@{msg.offset}")
                    if isinstance(rec, ReleaseRecord) and _in_range(rec, since_ms, until_ms):
                        out.append(rec)
        return out
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Window:
    """One whole released window of a stream: every cell it released (maybe none)."""

    stream: str
    start_ms: int
    end_ms: int
    records: list[ReleaseRecord]  # sorted by cell


class WindowAssembler:
    """Collects aggregate-topic records per window until the window is whole: on every
    partition of its topic, one completion record of each partials partition
    (privacy/records.py). The one place that decides completeness."""

    def __init__(self, partitions: Mapping[str, int]) -> None:
        self._partitions = partitions  # topic -> its partition count
        self._records: dict[tuple[str, int], list[ReleaseRecord]] = {}
        self._seen: dict[tuple[str, int], set[tuple[int, int]]] = {}  # (partition, partials p.)

    def add(self, topic: str, partition: int,
            record: ReleaseRecord | WindowComplete) -> Window | None:
        """Take one record; the window it completes, if it completes one."""
        key = (record.stream, record.window_start_ms)
        if isinstance(record, ReleaseRecord):
            self._records.setdefault(key, []).append(record)
            return None
        done = self._seen.setdefault(key, set())
        done.add((partition, record.partials_partition))
        if len(done) < self._partitions[topic] * record.partials_partitions:
            return None
        del self._seen[key]
        cells = sorted(self._records.pop(key, []), key=lambda r: tuple(r.cell.values()))
        return Window(record.stream, record.window_start_ms, record.window_end_ms, cells)


async def windows(bootstrap: str, topic: str, stop: asyncio.Event, *,
                  since_ms: int | None = None, options: Mapping[str, Any] | None = None,
                  poll_ms: int = 500) -> AsyncIterator[Window]:
    """Each window of ``topic`` once it is whole (from ``since_ms``, else from now),
    until ``stop`` is set: whole means every partition of the topic carried the
    completion record of every partials partition (privacy/records.py), so nothing
    is guessed from a quiet period. Windows come in the order they complete."""
    consumer, parts = await _consumer(bootstrap, topic, options or {})
    assembler = WindowAssembler({topic: len(parts)})
    try:
        if since_ms is None:
            await consumer.seek_to_end(*parts)
        else:
            await _start_at(consumer, parts, since_ms)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=poll_ms)
            for tp, msgs in batch.items():
                for msg in msgs:
                    rec = _decode(msg.value, f"{tp.topic}[{tp.partition}]@{msg.offset}")
                    if rec is None or (since_ms is not None and rec.window_start_ms < since_ms):
                        continue
                    window = assembler.add(tp.topic, tp.partition, rec)
                    if window is not None:
                        yield window
    finally:
        await consumer.stop()


def to_frame(records: Iterable[ReleaseRecord]) -> pd.DataFrame:
    """One row per (window, cell): window bounds (UTC), the cell's dimensions, and per
    metric ``m``: ``m``, ``m_std`` (noise std), ``m_ci95_low``, ``m_ci95_high`` (the 95%
    interval clipped to the value's domain), ``m_ci95_low_raw``, ``m_ci95_high_raw``
    (before clipping); then
    the privacy metadata (mechanism, epsilon, delta, rho, k, policy_version).
    ``under_k``: a public cell whose noisy account count was under k (only
    ``accounts`` is set; the other metrics are NaN)."""
    import pandas as pd

    rows = []
    dims: dict[str, None] = {}  # cell dimension names, in order
    for r in records:
        dims.update(dict.fromkeys(r.cell))
        row: dict[str, Any] = {"stream": r.stream, "window_start": r.window_start_ms,
                               "window_end": r.window_end_ms, **r.cell, "under_k": r.under_k}
        for name, v in r.metrics.items():
            row[name] = v.value
            row[f"{name}_std"] = v.noise_std
            row[f"{name}_ci95_low"] = v.ci95_low
            row[f"{name}_ci95_high"] = v.ci95_high
            # the interval before clipping to the value's domain (e.g. below 0 for a count)
            row[f"{name}_ci95_low_raw"], row[f"{name}_ci95_high_raw"] = v.raw_interval
        p = r.privacy
        row.update(mechanism=p.mechanism, epsilon=p.epsilon, delta=p.delta, rho=p.rho,
                   k=p.k, policy_version=p.policy_version)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for col in ("window_start", "window_end"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    # Counts are integers (the noise is integer-valued): int64, not float64. A column
    # missing in some rows (a metric of another policy version) stays float with NaN.
    for col in frame.columns:
        if (col in ("accounts", "events") or col.endswith(".count") or ".bucket." in col
                and not col.endswith(("_std", "_ci95_low", "_ci95_high", "_raw"))) \
                and frame[col].notna().all() and (frame[col] % 1 == 0).all():
            frame[col] = frame[col].astype("int64")
    frame["rho"] = frame["rho"].astype("float64")  # typed even when every value is None
    return frame.sort_values(["window_start", *dims], kind="stable").reset_index(drop=True)


def _run(coro: Any) -> Any:
    """Run a coroutine to completion, also inside a notebook (whose loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def releases(stream: str, *, bootstrap: str | None = None, since: str | None = None,
             until: str | None = None, config: Path | str = DEFAULT_PATH,
             topic_prefix: str = "", kafka_options: Mapping[str, Any] | None = None,
             ) -> pd.DataFrame:
    """Released aggregates of ``stream`` as a DataFrame (see ``to_frame``).

    ``since``/``until`` select windows by start time (``7d`` ago, ``2026-11-24``...).
    ``kafka_options`` carries SASL/TLS settings, e.g.
    ``ClientSecurity(ca_file=ca, cert_file=cert, key_file=key).options()`` or
    ``ClientSecurity(sasl_user="analyst", sasl_password=pw).options()``
    (``privmon.streams.kafka_client``).

    >>> df = releases("monitoring", since="-1h")            # doctest: +SKIP
    >>> df[["server", "errors.rate", "errors.rate_ci95_low"]]  # doctest: +SKIP
    """
    # The same deployment settings as the commands: $PRIVMON_BOOTSTRAP, $PRIVMON_CONFIG,
    # and the TLS files of $PRIVMON_TLS_* when no kafka_options are given.
    bootstrap = bootstrap or kafka_client.default_bootstrap(os.environ)
    if kafka_options is None:
        kafka_options = kafka_client.from_settings(environ=os.environ).options()
    topic = aggregate_topic(stream, config=config, topic_prefix=topic_prefix)
    since_ms = parse_time_ms(since) if since else None
    until_ms = parse_time_ms(until) if until else None
    records = _run(read_records(bootstrap, topic, since_ms=since_ms, until_ms=until_ms,
                                options=kafka_options))
    mismatch = policy_mismatch((r.privacy.policy_version for r in records),
                               load_config(config), config)
    if mismatch:
        warnings.warn(f"{topic} holds records {mismatch}", stacklevel=2)
    return to_frame(records)
