"""Alerts an operator can act on: a sensor's consecutive alerting windows are one incident, opened on its first alert,
updated when its peak has risen (at most once per `update_every` seconds of event time: the rate limit that keeps a
long anomaly from paging forty times) and closed when the sensor has had no alert for `gap` seconds.

Data contract: `GroupIncidents(gap, update_every, allowed_lateness)`: PCollection[Alert] → PCollection[Incident]
(`open`, `update`, `close` events, from the alerts in event-time order; an incident closes when the watermark passes
`gap` + `allowed_lateness` seconds after its latest alert: an alert may reach the tracker behind the watermark, as
the local runner's watermark does not wait for timer output, and one that comes within `gap` of the incident still
joins it; one later than that opens a new incident). `WriteIncidents(topic,
files_dir, ...)`: PCollection[Incident] → Pub/Sub messages (JSON, attributes `sensor_id` and `event`) and/or JSON
Lines files per event-time window (`incidents-<window>-pane-<i>-...jsonl`). The rules are the plain class
`IncidentTracker`; the DoFn only keeps it in keyed state and sets the closing timer.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_ml.stream.elements import Alert, Incident
from beam_ml.stream.sinks import WriteJsonLinesFiles

OPEN, UPDATE, CLOSE = "open", "update", "close"


@dataclasses.dataclass
class IncidentTracker:
    """One sensor's open incident (None when there is none) and when an event about it was last sent."""

    gap: float
    update_every: float
    incident: Optional[Incident] = None
    last_sent: float = float("-inf")
    peak_unsent: bool = False  # the peak rose since the last event sent

    def add(self, alert: Alert) -> list[Incident]:
        """The events an alert causes: `open` for a new incident (after `close` of one the gap has passed),
        `update` when the peak has risen since the last event and the rate limit allows, none otherwise."""
        events = []
        current = self.incident
        if current is not None and alert.window_start > current.end + self.gap:
            events.append(self.close())
            current = None
        if current is None:
            self.incident = Incident(f"{alert.sensor_id}@{alert.window_start:.3f}", OPEN, alert.sensor_id,
                                     alert.window_start, alert.window_end, alert.score, alert.threshold,
                                     alert.detector, tuple(alert.top_channels), 1)
            self.last_sent = alert.window_end
            return events + [self.incident]
        higher = alert.score > current.peak_score
        self.incident = dataclasses.replace(
            current, event=UPDATE, end=max(current.end, alert.window_end), alerts=current.alerts + 1,
            **({"peak_score": alert.score, "threshold": alert.threshold, "detector": alert.detector,
                "top_channels": tuple(alert.top_channels)} if higher else {}))
        self.peak_unsent = self.peak_unsent or higher
        if self.peak_unsent and alert.window_end - self.last_sent >= self.update_every:
            self.last_sent, self.peak_unsent = alert.window_end, False
            events.append(self.incident)
        return events

    def close(self) -> Incident:
        closed = dataclasses.replace(self.incident, event=CLOSE)
        self.incident, self.last_sent, self.peak_unsent = None, float("-inf"), False
        return closed


class TrackIncidents(beam.DoFn):
    """(sensor, Alert) → Incident events, the sensor's `IncidentTracker` in keyed state. Alerts wait in a buffer until
    the watermark reaches them, then go to the tracker in event-time order (windows released together arrive in no
    particular order); an event-time timer `gap` + `allowed_lateness` after the latest alert closes the incident."""

    TRACKER = ReadModifyWriteStateSpec("tracker", PickleCoder())
    WAITING = BagStateSpec("waiting", PickleCoder())
    FLUSH_TIMER = TimerSpec("flush", TimeDomain.WATERMARK)
    CLOSE_TIMER = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, gap: float, update_every: float, allowed_lateness: float = 0.0):
        self._gap, self._update_every, self._lateness = gap, update_every, allowed_lateness

    def process(self, element, timestamp=beam.DoFn.TimestampParam, waiting=beam.DoFn.StateParam(WAITING),
                flush=beam.DoFn.TimerParam(FLUSH_TIMER)):
        _, alert = element
        waiting.add(alert)
        flush.set(timestamp)  # all of a sensor's alerts up to here, once the watermark has passed them

    @on_timer(FLUSH_TIMER)
    def on_flush(self, fired=beam.DoFn.TimestampParam, waiting=beam.DoFn.StateParam(WAITING),
                 tracker=beam.DoFn.StateParam(TRACKER), close=beam.DoFn.TimerParam(CLOSE_TIMER)):
        alerts = sorted(waiting.read(), key=lambda a: (a.window_end, a.window_start))
        waiting.clear()
        state = tracker.read() or IncidentTracker(self._gap, self._update_every)
        for alert in alerts:
            yield from state.add(alert)
        tracker.write(state)
        close.set(Timestamp.of(float(fired) + self._gap + self._lateness))

    @on_timer(CLOSE_TIMER)
    def on_close(self, tracker=beam.DoFn.StateParam(TRACKER)):
        state = tracker.read()
        if state is not None and state.incident is not None:
            yield state.close()
        tracker.clear()


class GroupIncidents(beam.PTransform[beam.PCollection[Alert], beam.PCollection[Incident]]):
    """Alerts → incidents (see the module docstring).

    Example::

        incidents = alerts | GroupIncidents(gap=300, update_every=60, allowed_lateness=60)
    """

    def __init__(self, gap: float, update_every: float, allowed_lateness: float = 0.0):
        super().__init__()
        self._gap, self._update_every, self._lateness = gap, update_every, allowed_lateness

    def expand(self, alerts: beam.PCollection[Alert]) -> beam.PCollection[Incident]:
        return (alerts
                | "Global" >> beam.WindowInto(window.GlobalWindows())  # a sensor's state spans scoring's windows
                | "BySensor" >> beam.Map(lambda alert: (alert.sensor_id, alert))
                | "Track" >> beam.ParDo(TrackIncidents(self._gap, self._update_every, self._lateness)))


def incident_to_json(incident: Incident) -> str:
    """One incident event as a JSON object, keys sorted (`top_channels` a list)."""
    record = dataclasses.asdict(incident)
    record["top_channels"] = list(incident.top_channels)
    return json.dumps(record, sort_keys=True)


def _to_pubsub_message(incident: Incident):
    from apache_beam.io.gcp.pubsub import PubsubMessage
    return PubsubMessage(incident_to_json(incident).encode("utf-8"),
                         {"sensor_id": incident.sensor_id, "event": incident.event})


class WriteIncidents(beam.PTransform[beam.PCollection[Incident], beam.pvalue.PDone]):
    """Incident events to a Pub/Sub topic and/or JSON Lines files (see the module docstring)."""

    def __init__(self, topic: Optional[str], files_dir: Optional[str], file_window: float, allowed_lateness: float):
        super().__init__()
        self._topic, self._dir = topic, files_dir
        self._file_window, self._lateness = file_window, allowed_lateness

    def expand(self, incidents: beam.PCollection[Incident]):
        if self._topic:
            _ = (incidents | "ToPubSub" >> beam.Map(_to_pubsub_message)
                 | "WriteToPubSub" >> beam.io.WriteToPubSub(self._topic, with_attributes=True))
        if self._dir:
            _ = (incidents | "ToJsonLines" >> beam.Map(lambda incident: (0, incident_to_json(incident)))  # 1 shard
                 | "WriteFiles" >> WriteJsonLinesFiles(self._dir, "incidents", self._file_window, self._lateness))
        return beam.pvalue.PDone(incidents.pipeline)
