"""Spans and versions in input patterns, with TFX's grammar, resolved when the graph is built.

A pattern may name its span with `{SPAN}` (digits) or `{SPAN:width}` (zero-padded), or with a date, `{YYYY}`,
`{MM}` and `{DD}` together (the span number is then the day count since 1970-01-01, as in TFX); and a version with
`{VERSION}` or `{VERSION:width}`. Which spans are read:
  * `latest` (default): the newest span;
  * `last:N`: the newest N spans (a rolling range);
  * `A-B`: spans A to B inclusive (a static range).
Each span is read at its newest version unless a version is given.

    resolve_spans("data/span-{SPAN}/v{VERSION}/*.csv", "last:2")
    # -> SpanSelection(patterns=("data/span-2/v1/*.csv", "data/span-3/v2/*.csv"), spans=(2, 3), versions=(1, 2))
"""
from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Optional

from apache_beam.io.filesystems import FileSystems

_PLACEHOLDER = re.compile(r"\{(SPAN|VERSION)(?::(\d+))?\}|\{(YYYY|MM|DD)\}")
_DATE_WIDTHS = {"YYYY": 4, "MM": 2, "DD": 2}
_EPOCH = datetime.date(1970, 1, 1)
SPAN_SELECTION = re.compile(r"^(latest|last:[1-9][0-9]*|[0-9]+-[0-9]+)$")


@dataclasses.dataclass(frozen=True)
class SpanSelection:
    """What a pattern resolved to: one concrete glob per selected span (at its version), for the run manifest."""

    patterns: tuple[str, ...]
    spans: tuple[int, ...]
    versions: tuple[Optional[int], ...]


def has_placeholders(pattern: str) -> bool:
    return bool(_PLACEHOLDER.search(pattern))


def _compile(pattern: str) -> tuple[str, re.Pattern]:
    """The glob that matches every span and version, and a regex that captures them from a matched path."""
    names = [m.group(1) or m.group(3) for m in _PLACEHOLDER.finditer(pattern)]
    dates = {n for n in names if n in _DATE_WIDTHS}
    if dates and dates != set(_DATE_WIDTHS):
        raise ValueError(f"{pattern!r}: a date span needs {{YYYY}}, {{MM}} and {{DD}} together")
    if dates and "SPAN" in names:
        raise ValueError(f"{pattern!r}: use either {{SPAN}} or a date, not both")
    if not dates and "SPAN" not in names:
        raise ValueError(f"{pattern!r}: {{VERSION}} needs a span ({{SPAN}} or {{YYYY}}{{MM}}{{DD}})")
    for name in set(names):
        if names.count(name) > 1:
            raise ValueError(f"{pattern!r}: {{{name}}} appears more than once")
    glob_parts, regex_parts, last = [], [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        literal = pattern[last:m.start()]
        glob_parts.append(literal)
        regex_parts.append(_glob_to_regex(literal))
        name, width = m.group(1) or m.group(3), m.group(2) or _DATE_WIDTHS.get(m.group(3))
        glob_parts.append("?" * int(width) if width else "*")
        regex_parts.append(f"(?P<{name}>{'[0-9]{%s}' % width if width else '[0-9]+'})")
        last = m.end()
    glob_parts.append(pattern[last:])
    regex_parts.append(_glob_to_regex(pattern[last:]))
    return "".join(glob_parts), re.compile("^" + "".join(regex_parts) + "$")


def _glob_to_regex(glob: str) -> str:
    out = []
    for char in glob:
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
    return "".join(out)


def _span_of(match: re.Match) -> int:
    if match.groupdict().get("SPAN") is not None:
        return int(match.group("SPAN"))
    day = datetime.date(int(match.group("YYYY")), int(match.group("MM")), int(match.group("DD")))
    return (day - _EPOCH).days


def _fill(pattern: str, span: int, version: Optional[int]) -> str:
    day = _EPOCH + datetime.timedelta(days=span)

    def value(m: re.Match) -> str:
        name, width = m.group(1) or m.group(3), m.group(2)
        number = {"SPAN": span, "VERSION": version, "YYYY": day.year, "MM": day.month, "DD": day.day}[name]
        return str(number).zfill(int(width or _DATE_WIDTHS.get(name, 0)))

    return _PLACEHOLDER.sub(value, pattern)


def resolve_spans(pattern: str, selection: str = "latest", version: Optional[int] = None) -> SpanSelection:
    """Finds the spans (and versions) present and picks them as `selection` says; raises ValueError if none fit."""
    if not SPAN_SELECTION.match(selection):
        raise ValueError(f"span selection {selection!r}: give latest, last:N or A-B")
    glob, regex = _compile(pattern)
    found: dict[int, set[Optional[int]]] = {}
    for metadata in FileSystems.match([glob])[0].metadata_list:
        match = regex.match(metadata.path)
        if match:
            raw = match.groupdict().get("VERSION")
            found.setdefault(_span_of(match), set()).add(int(raw) if raw is not None else None)
    if not found:
        raise ValueError(f"{pattern!r}: no files match any span")
    spans = sorted(found)
    if selection == "latest":
        chosen = spans[-1:]
    elif selection.startswith("last:"):
        chosen = spans[-int(selection.split(":")[1]):]
    else:
        low, high = (int(x) for x in selection.split("-"))
        chosen = [s for s in spans if low <= s <= high]
        missing = sorted(set(range(low, high + 1)) - set(chosen))
        if missing:
            raise ValueError(f"{pattern!r}: spans {missing} of {selection} have no files (found {spans})")
    versions = []
    for span in chosen:
        present = found[span]
        if version is not None and version not in present:
            raise ValueError(f"{pattern!r}: span {span} has no version {version} (found {sorted(present)})")
        versions.append(version if version is not None else max(present, key=lambda v: -1 if v is None else v))
    return SpanSelection(patterns=tuple(_fill(pattern, s, v) for s, v in zip(chosen, versions)),
                         spans=tuple(chosen), versions=tuple(versions))


QUERY_SPAN_PARAMETERS = ("span_begin_timestamp", "span_end_timestamp", "span_yyyymmdd_utc")
QUERY_SPAN_PLACEHOLDER = re.compile(r"@(" + "|".join(QUERY_SPAN_PARAMETERS) + r")\b")


def query_span_placeholders(query: str) -> list[str]:
    """The TFX span placeholders (`@span_begin_timestamp`...) a query uses, each once, in order of first use."""
    return list(dict.fromkeys(f"@{m.group(1)}" for m in QUERY_SPAN_PLACEHOLDER.finditer(query)))


def query_span_values(begin: int, end: int) -> dict[str, object]:
    """The values of TFX's query placeholders (@span_begin_timestamp, @span_end_timestamp, @span_yyyymmdd_utc) for
    the spans `begin`..`end` inclusive, a span being a UTC day counted from 1970-01-01: the first second of the
    range, the first second after it (TFX's end is exclusive: `ts < @span_end_timestamp`), and the first day as
    YYYYMMDD text."""
    first_day = _EPOCH + datetime.timedelta(days=begin)
    return {"span_begin_timestamp": begin * 86400, "span_end_timestamp": (end + 1) * 86400,
            "span_yyyymmdd_utc": first_day.strftime("%Y%m%d")}
