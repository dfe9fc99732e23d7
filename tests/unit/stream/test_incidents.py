"""Incidents: a sensor's run of alerts is one incident (open, rate-limited updates, close after a quiet gap), by
the plain rules and through the streaming graph on a TestStream."""
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from beam_ml.stream.elements import Alert
from beam_ml.stream.incidents import GroupIncidents, IncidentTracker, incident_to_json


def _alert(sensor: str, end: float, score: float, length: float = 3.0) -> Alert:
    return Alert(sensor, end - length, end, score, 1.0, "model", "7", (f"channel-{int(score)}",))


def test_the_rules_open_update_at_the_rate_limit_and_close_after_the_gap():
    tracker = IncidentTracker(gap=60, update_every=60)
    [opened] = tracker.add(_alert("s", 100, 2.0))
    assert (opened.event, opened.start, opened.end, opened.peak_score, opened.alerts) == ("open", 97, 100, 2.0, 1)
    assert tracker.add(_alert("s", 103, 1.5)) == []  # lower: no event
    assert tracker.add(_alert("s", 106, 3.0)) == []  # higher, but the last event was 6 s ago
    [update] = tracker.add(_alert("s", 160, 4.0))  # higher, 60 s after the open
    assert (update.event, update.peak_score, update.top_channels, update.alerts, update.end) == (
        "update", 4.0, ("channel-4",), 4, 160)
    assert update.incident_id == opened.incident_id
    closed, reopened = tracker.add(_alert("s", 300, 2.5))  # 137 s after the last alert: a new one
    assert (closed.event, closed.end, closed.alerts, reopened.event) == ("close", 160, 4, "open")
    assert reopened.incident_id != opened.incident_id and tracker.close().event == "close"
    assert json.loads(incident_to_json(closed))["top_channels"] == ["channel-4"]


def test_a_two_minute_anomaly_is_one_incident_not_forty_alerts():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    alerts = [_alert("s1", 1000 + 3 * i, 1.0 + (i % 10) / 2) for i in range(40)]  # every 3 s for 2 minutes
    stream = TestStream().advance_watermark_to(0)
    for alert in alerts:
        stream = stream.add_elements([beam.window.TimestampedValue(alert, alert.window_end)])
    released_together = [_alert("s2", 1050, 9.0), _alert("s2", 1047, 8.0)]  # one timer's windows, in any order
    stream = (stream.add_elements([beam.window.TimestampedValue(a, 1050) for a in released_together])
              .advance_watermark_to(1200)  # 80 s quiet after the last alert: closed (gap 60)
              .add_elements([beam.window.TimestampedValue(_alert("s1", 1500, 2.0), 1500)])
              .advance_watermark_to(2000)
              .advance_watermark_to_infinity())
    p = TestPipeline(options=options)
    incidents = (p | stream.with_output_types(Alert)
                 | beam.WindowInto(window.FixedWindows(1))  # as model scoring's batches leave them
                 | GroupIncidents(gap=60, update_every=60))
    assert_that(incidents | "S2Start" >> beam.Filter(lambda i: i.sensor_id == "s2")
                | beam.Map(lambda i: (i.incident_id, i.start)), equal_to([("s2@1044.000", 1044.0)] * 2),
                label="EarliestFirst")
    assert_that(incidents | beam.Map(lambda i: (i.sensor_id, i.event, i.alerts, i.peak_score)), equal_to([
        ("s1", "open", 1, 1.0), ("s1", "update", 21, 5.5), ("s1", "close", 40, 5.5),
        ("s2", "open", 1, 8.0), ("s2", "close", 2, 9.0),
        ("s1", "open", 1, 2.0), ("s1", "close", 1, 2.0)]))
    p.run().wait_until_finish()


def test_an_alert_behind_the_watermark_within_the_lateness_still_joins_its_incident():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    stream = (TestStream().advance_watermark_to(0)
              .add_elements([beam.window.TimestampedValue(_alert("s", 1000, 2.0), 1000)])
              .advance_watermark_to(1070)  # past the gap (60 s), not past gap + lateness (90 s)
              .add_elements([beam.window.TimestampedValue(_alert("s", 1003, 3.0), 1003)])  # late, as a timer's output
              .advance_watermark_to(1200)
              .advance_watermark_to_infinity())
    p = TestPipeline(options=options)
    incidents = (p | stream.with_output_types(Alert)
                 | GroupIncidents(gap=60, update_every=60, allowed_lateness=30))
    assert_that(incidents | beam.Map(lambda i: (i.event, i.alerts, i.peak_score, i.end)),
                equal_to([("open", 1, 2.0, 1000), ("close", 2, 3.0, 1003)]))
    p.run().wait_until_finish()
