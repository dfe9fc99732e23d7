"""Pub/Sub emulator harness for streaming tests: the session emulator, topics with pre-created subscriptions, a
streaming pipeline run that always ends in cancel() with heartbeats flowing, polling with a deadline, and the
test-only fix that makes the BundleBasedDirectRunner report every bundle's user metrics.

The traps it handles are those of ../shared/docs/EMULATORS.md: subscriptions are created before the pipeline
starts (ReadFromPubSub(subscription=...)); heartbeats (attribute `heartbeat=1`, see tools.replay_telemetry) flow from
before run() until cancel() returned, so the DirectRunner's reader never blocks 30 s on an empty subscription and
its watermark (wall-clock time at the end of each pull) keeps moving; `wait_until_finish(duration)` is not
supported, so results are polled with a deadline and the pipeline is cancelled.
"""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Callable, Iterator, TypeVar

import pytest

PROJECT = "test-project"
T = TypeVar("T")


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> Iterator[str]:
    """The official Cloud Pub/Sub emulator for this session on a free port; PUBSUB_EMULATOR_HOST points the
    google-cloud-pubsub clients (ours and Beam's) at it. Fails (not skips) when it is not installed: CI has it."""
    from tests.support import emulators
    process, host, _ = emulators.start_pubsub(str(tmp_path_factory.mktemp("pubsub_logs")))
    if process is None:
        pytest.fail(f"the Cloud Pub/Sub emulator is not installed: need {emulators.PUBSUB_BIN} (Debian package "
                    "google-cloud-cli-pubsub-emulator) and `java` on PATH", pytrace=False)
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        process.stop()
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


def topic_with_subscription(publisher, subscriber, name: str) -> tuple[str, str]:
    """Creates topic `<name>-<random>` and a subscription to it; returns their paths."""
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path(PROJECT, f"{name}-{suffix}")
    subscription = subscriber.subscription_path(PROJECT, f"{name}-{suffix}-sub")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    return topic, subscription


def pull(subscriber, subscription: str, max_messages: int = 100) -> list:
    """Pulls what is waiting (at most `max_messages`, returning at once when there is nothing) and acks it."""
    response = subscriber.pull(subscription=subscription, max_messages=max_messages, return_immediately=True,
                               timeout=10)
    received = list(response.received_messages)
    if received:
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    return [m.message for m in received]


def poll(observe: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.25) -> T:
    """Calls `observe` until `done(value)` or `timeout` seconds passed; returns the last value (assert on it)."""
    deadline = time.time() + timeout
    while True:
        value = observe()
        if done(value) or time.time() > deadline:
            return value
        time.sleep(interval)


@contextlib.contextmanager
def running(pipeline, publisher, topic: str, heartbeat_interval: float = 0.3):
    """Runs a streaming pipeline with heartbeats on `topic`; yields the result; cancels it on exit and stops the
    heartbeats only after cancel() returned (shutdown waits for the reader's in-flight pull)."""
    from tools.replay_telemetry import Heartbeat
    with Heartbeat(publisher, topic, heartbeat_interval):
        result = pipeline.run()
        try:
            yield result
        finally:
            result.cancel()


def _fresh_state_sampler_call(original):
    def call(self, state_sampler):
        from apache_beam.runners.worker import statesampler
        from apache_beam.utils import counters
        fresh = statesampler.StateSampler("", counters.CounterFactory())
        statesampler.set_current_tracker(fresh)
        try:
            return original(self, fresh)
        finally:
            statesampler.set_current_tracker(state_sampler)
    call.fixes_direct_runner_metrics = True
    return call


@pytest.fixture
def direct_runner_metrics():
    """Test-only fix for a BundleBasedDirectRunner bug in Beam 2.66 (see tests/test_streaming_metrics.py): each
    executor thread keeps one StateSampler, whose `scoped_state()` caches a step's ScopedState with the
    MetricsContainer of the step's *first* bundle; later bundles pass a new container that is ignored, so their
    user metric updates land in the first, already committed container and are never reported. This gives each
    bundle a fresh sampler, so `result.metrics()` sees every bundle's updates."""
    from apache_beam.runners.direct import executor
    original = executor.TransformExecutor.call
    executor.TransformExecutor.call = _fresh_state_sampler_call(original)
    try:
        yield
    finally:
        executor.TransformExecutor.call = original
