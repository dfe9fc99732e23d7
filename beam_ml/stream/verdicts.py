"""From verdicts to alerts: an ensemble's vote and the alert rule.

Data contract:
  * `Vote(members, rule)`: a tuple of PCollection[ScoredWindow] (model and online verdicts) → one ensemble
    ScoredWindow per window, alerting when `rule` ("any", "majority" or "all") holds.
  * `ToAlerts()`: PCollection[ScoredWindow] → PCollection[Alert] where score >= threshold.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.window import GlobalWindows

from beam_ml.stream.elements import Alert, ScoredWindow

VOTE_RULES = ("any", "majority", "all")


def votes_needed(rule: str, members: int) -> int:
    """How many of `members` verdicts must alert for the ensemble to alert under `rule`."""
    if rule not in VOTE_RULES:
        raise ValueError(f"unknown vote rule {rule!r}: one of {', '.join(VOTE_RULES)}")
    return {"any": 1, "majority": members // 2 + 1, "all": members}[rule]


def ensemble_verdict(verdicts: Sequence[ScoredWindow], rule: str) -> ScoredWindow:
    """The members' verdicts on one window as one: its score is the share of members alerting, its threshold the
    share `rule` needs; it is named after the members that alerted (all members if none did) and lists their top
    channels, first-named first."""
    verdicts = sorted(verdicts, key=lambda v: v.detector)
    voters = [v for v in verdicts if v.alerting]
    needed = votes_needed(rule, len(verdicts))
    channels = tuple(dict.fromkeys(c for v in voters for c in v.top_channels))
    version = next((v.model_version for v in verdicts if v.model_version), None)
    first = verdicts[0]
    return ScoredWindow(first.sensor_id, first.start, first.end, len(voters) / len(verdicts),
                        needed / len(verdicts), "+".join(v.detector for v in voters or verdicts), channels, (),
                        version)


def window_key(verdict: ScoredWindow) -> tuple[str, ScoredWindow]:
    return f"{verdict.sensor_id}@{verdict.end!r}", verdict


class VoteFn(beam.DoFn):
    """Keyed by sensor and window: holds verdicts until all `members` have given theirs, then emits the ensemble's."""

    VERDICTS = BagStateSpec("verdicts", PickleCoder())

    def __init__(self, members: int, rule: str):
        self._members, self._rule = members, rule

    def process(self, element, verdicts=beam.DoFn.StateParam(VERDICTS)) -> Iterable[ScoredWindow]:
        _, verdict = element
        held = list(verdicts.read()) + [verdict]
        if len(held) < self._members:
            verdicts.add(verdict)
            return
        verdicts.clear()
        yield ensemble_verdict(held, self._rule)


class Vote(beam.PTransform[Sequence[beam.PCollection[ScoredWindow]], beam.PCollection[ScoredWindow]]):
    """Combines the verdicts of an ensemble's members on each window (every member scores every window) into one
    verdict per window, alerting when `rule` ("any", "majority" or "all") holds. Applied to a tuple of
    PCollection[ScoredWindow], one per scoring step; the verdicts may be in any windowing.

    Example::

        verdicts = (model_verdicts, online_verdicts) | Vote(members=3, rule="majority")
    """

    def __init__(self, members: int, rule: str = "any"):
        super().__init__()
        votes_needed(rule, members)
        if members < 2:
            raise ValueError(f"an ensemble has at least 2 members, got {members}")
        self._members, self._rule = members, rule

    def expand(self, verdicts: Sequence[beam.PCollection[ScoredWindow]]) -> beam.PCollection[ScoredWindow]:
        # Scoring steps window their output differently (RunInference batches in short fixed windows); the vote
        # waits for verdicts, not for a window to close, so it runs in the global window.
        rewindowed = [v | f"GlobalWindow{i}" >> beam.WindowInto(GlobalWindows()) for i, v in enumerate(verdicts)]
        return (rewindowed
                | "AllVerdicts" >> beam.Flatten()
                | "KeyByWindow" >> beam.Map(window_key).with_output_types(beam.typehints.KV[str, ScoredWindow])
                | "Vote" >> beam.ParDo(VoteFn(self._members, self._rule)))


def alert_of(scored: ScoredWindow, top: int) -> Iterable[Alert]:
    if scored.alerting:
        yield Alert(scored.sensor_id, scored.start, scored.end, scored.score, scored.threshold, scored.detector,
                    scored.model_version, scored.top_channels[:top])


class ToAlerts(beam.PTransform[beam.PCollection[ScoredWindow], beam.PCollection[Alert]]):
    """Turns verdicts into alerts where the score reached the threshold.

    Example::

        alerts = verdicts | ToAlerts(top=3)

    Args:
      top: how many of the top channels an alert names.
    """

    def __init__(self, top: int = 3):
        super().__init__()
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        self._top = top

    def expand(self, verdicts: beam.PCollection[ScoredWindow]) -> beam.PCollection[Alert]:
        return verdicts | "Alerts" >> beam.FlatMap(alert_of, self._top)
