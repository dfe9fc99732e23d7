"""Incidents as the streaming job makes them of a sensor's alerts (`beam_ml.stream.incidents.IncidentTracker`), judged
against labelled faults: the incident-level precision and recall the NAB and SKAB benchmarks report beside their
row-level metrics."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from beam_ml.stream.elements import Alert
from beam_ml.stream.incidents import IncidentTracker


def incidents(times: np.ndarray, alerts: np.ndarray, gap: float) -> list[tuple[float, float]]:
    """(start, end) in unix seconds of each incident the streaming job's tracker makes of one sensor's alert rows."""
    tracker = IncidentTracker(gap=gap, update_every=float("inf"))
    found = []
    for t in times[alerts.astype(bool)]:
        for event in tracker.add(Alert("sensor", float(t), float(t), 1.0, 1.0, "detector")):
            if event.event == "close":
                found.append((event.start, event.end))
    if tracker.incident is not None:
        closed = tracker.close()
        found.append((closed.start, closed.end))
    return found


def fault_segments(times: np.ndarray, anomaly: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) in unix seconds of each run of labelled rows."""
    edges = np.diff(np.concatenate([[0], anomaly.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(times[a]), float(times[b - 1])) for a, b in zip(starts, ends)]


def incident_metrics(files: Sequence[tuple[list, list]]) -> tuple[float, float, int]:
    """(precision, recall, incidents) over (incidents, fault segments) per file: an incident is right when it overlaps
    a fault, a fault found when an incident overlaps it."""
    def overlaps(a, b):
        return a[0] <= b[1] and b[0] <= a[1]
    made = sum(len(found) for found, _ in files)
    right = sum(any(overlaps(i, f) for f in faults) for found, faults in files for i in found)
    faults = sum(len(faults) for _, faults in files)
    caught = sum(any(overlaps(i, f) for i in found) for found, faults_ in files for f in faults_)
    return right / made if made else 1.0, caught / faults if faults else 1.0, made
