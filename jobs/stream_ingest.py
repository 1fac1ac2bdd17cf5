"""Streaming ingestion: events from a Redis Stream into the running app's EmbeddingUpdater.

``wayfinder stream-ingest --redis redis://HOST:6379/0 --stream wayfinder:events`` joins the Ray
cluster (``--address`` or ``RAY_ADDRESS``), finds the Serve app's ``EmbeddingUpdater`` deployment,
and consumes the stream as one named consumer of a consumer group: at least once, idempotent through
``event_id`` (an entry without one gets ``<stream>:<entry id>``), in batches, acknowledging (``XACK``)
only after the updater returned, i.e. once every event and its user's new state are durable in the
store. Malformed entries go to the dead-letter stream (default ``<stream>:dead``) with their reason.
Run several consumers with distinct ``--consumer`` names to share the work; entries a dead consumer
left unacknowledged are taken over after ``--claim-idle-ms``. A progress line goes to stderr every
``--progress-every-s``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from jobs._stream_consumer import ConsumerConfig, Counts, Sink, SinkRejected, StreamConsumer
from jobs.preprocess import add_address_argument
from recsys.embeddings import UpdaterConfig
from recsys.engine import Ack, IncomingEvent
from recsys.errors import ConfigError


class StreamIngestConfig(BaseModel):
    """Validated settings of one consumer."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str = Field(pattern=r"^(redis|rediss|unix)://", description="Redis holding the stream")
    stream: str = Field(min_length=1)
    group: str = Field(min_length=1)
    consumer: str = Field(min_length=1)
    dead_letter: str = Field(min_length=1)
    app_name: str = Field(min_length=1)
    batch_size: int = Field(ge=1, le=10_000)
    block_ms: int = Field(ge=1)
    claim_idle_ms: int = Field(ge=0)
    start_id: str = Field(pattern=r"^(\$|0|\d+-\d+)$")
    progress_every_s: float = Field(gt=0)
    max_entries: int | None = Field(default=None, ge=1)
    exit_when_idle_s: float | None = Field(default=None, ge=0)
    call_timeout_s: float = Field(gt=0)

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            stream=self.stream,
            group=self.group,
            consumer=self.consumer,
            dead_letter=self.dead_letter,
            batch_size=self.batch_size,
            block_ms=self.block_ms,
            claim_idle_ms=self.claim_idle_ms,
            start_id=self.start_id,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL of the stream")
    parser.add_argument("--stream", default="wayfinder:events", help="stream key")
    parser.add_argument("--group", default="wayfinder", help="consumer group (created when missing)")
    parser.add_argument(
        "--consumer", default=socket.gethostname(), help="this consumer's name (default: the host name)"
    )
    parser.add_argument("--dead-letter", help="dead-letter stream (default: STREAM:dead)")
    parser.add_argument("--app", default="wayfinder", help="Serve application with the EmbeddingUpdater")
    parser.add_argument("--batch-size", type=int, default=256, help="entries per updater call")
    parser.add_argument("--block-ms", type=int, default=1_000, help="longest wait for new entries")
    parser.add_argument(
        "--claim-idle-ms",
        type=int,
        default=60_000,
        help="take over other consumers' entries unacknowledged for this long",
    )
    parser.add_argument(
        "--start-id", default="0", help="where a new group starts: 0 (whole stream) or $ (new entries)"
    )
    parser.add_argument("--progress-every-s", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--max-entries", type=int, help="stop after this many entries")
    parser.add_argument(
        "--exit-when-idle-s", type=float, help="stop once nothing is new or pending for this long"
    )
    parser.add_argument("--call-timeout-s", type=float, default=120.0, help="limit of one updater call")
    add_address_argument(parser)


def config_from(args: argparse.Namespace) -> StreamIngestConfig:
    try:
        return StreamIngestConfig(
            redis_url=args.redis,
            stream=args.stream,
            group=args.group,
            consumer=args.consumer,
            dead_letter=args.dead_letter or f"{args.stream}:dead",
            app_name=args.app,
            batch_size=args.batch_size,
            block_ms=args.block_ms,
            claim_idle_ms=args.claim_idle_ms,
            start_id=args.start_id,
            progress_every_s=args.progress_every_s,
            max_entries=args.max_entries,
            exit_when_idle_s=args.exit_when_idle_s,
            call_timeout_s=args.call_timeout_s,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid stream-ingest settings: {exc}") from exc


class UpdaterSink:
    """The running app's ``EmbeddingUpdater.ingest`` through a Serve handle (durable on return).

    A call that fails for want of a replica (one died, the app is being updated, the call timed out)
    is retried ``retries`` times with doubling waits: at least once is safe, as events are idempotent.
    """

    def __init__(self, app_name: str, *, timeout_s: float, retries: int = 5) -> None:
        from ray import serve

        self._handle = serve.get_deployment_handle("EmbeddingUpdater", app_name=app_name)
        self._timeout_s = timeout_s
        self._retries = retries

    def __call__(self, events: Sequence[IncomingEvent]) -> list[Ack]:
        from ray.exceptions import RayActorError, RayTaskError

        for attempt in range(self._retries + 1):
            try:
                acks: list[Ack] = self._handle.ingest_external.remote(list(events)).result(
                    timeout_s=self._timeout_s
                )
            except RayTaskError as exc:
                if isinstance(exc.cause, ValueError):  # refused for the events' content
                    raise SinkRejected(f"{type(exc.cause).__name__}: {exc.cause}"[:500]) from exc
                raise  # e.g. the store is down: stop, the entries stay pending
            except (RayActorError, TimeoutError) as exc:
                if attempt == self._retries:
                    raise
                wait = 2.0**attempt
                print(
                    f"[stream-ingest] updater call failed ({exc!r:.200}); retry in {wait:.0f} s",
                    file=sys.stderr,
                )
                time.sleep(wait)
            else:
                return acks
        raise AssertionError("unreachable")


def progress_line(counts: Counts, lag: int, pending: int, rate: float) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.reasons.items()))
    return (
        f"[stream-ingest] read {counts.read:,} (claimed {counts.claimed:,}): applied {counts.applied:,}, "
        f"duplicate {counts.duplicate:,}, pending_item {counts.pending_item:,}, "
        f"dead-lettered {counts.dead_lettered:,}{f' ({reasons})' if reasons else ''}; "
        f"lag {lag:,}, unacked {pending:,}; {rate:,.0f} entries/s"
    )


def consume(consumer: StreamConsumer, config: StreamIngestConfig) -> Counts:
    """Run the consumer until ``max_entries`` or ``exit_when_idle_s`` says stop (else forever)."""
    consumer.ensure_group()
    started = last_print = last_busy = time.monotonic()
    printed_at = 0
    while True:
        got = consumer.step()
        now = time.monotonic()
        counts = consumer.counts
        if got:
            last_busy = now
        if now - last_print >= config.progress_every_s:
            lag, pending = consumer.backlog()
            rate = (counts.read - printed_at) / (now - last_print)
            print(progress_line(counts, lag, pending, rate), file=sys.stderr, flush=True)
            last_print, printed_at = now, counts.read
        if config.max_entries is not None and counts.read >= config.max_entries:
            break
        if config.exit_when_idle_s is not None and not got and now - last_busy >= config.exit_when_idle_s:
            lag, pending = consumer.backlog()
            if lag == 0 and pending == 0:
                break
    lag, pending = consumer.backlog()
    elapsed = max(time.monotonic() - started, 1e-9)
    print(progress_line(consumer.counts, lag, pending, consumer.counts.read / elapsed), file=sys.stderr)
    return consumer.counts


def build_consumer(config: StreamIngestConfig, sink: Sink) -> StreamConsumer:
    client = redis.Redis.from_url(config.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"cannot reach Redis at {config.redis_url}: {exc}") from exc
    known = UpdaterConfig().weights.event_types.names
    return StreamConsumer(client, config.consumer_config(), sink, known)


def run(args: argparse.Namespace) -> Any:
    from jobs._ray import init_ray

    config = config_from(args)
    init_ray(args.address)
    try:
        sink = UpdaterSink(config.app_name, timeout_s=config.call_timeout_s)
    except Exception as exc:  # Serve says why (no such app or deployment) in its own words
        raise ConfigError(f"no EmbeddingUpdater in Serve app {config.app_name!r}: {exc}") from exc
    counts = consume(build_consumer(config, sink), config)
    print(
        f"Consumed {counts.read:,} entries from {config.stream} as {config.group}/{config.consumer}: "
        f"{counts.applied:,} applied, {counts.duplicate:,} duplicate, "
        f"{counts.dead_lettered:,} dead-lettered to {config.dead_letter}",
        flush=True,
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.stream_ingest", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
