"""Times as users write them: unix seconds or ISO 8601 (config cutoffs, CSV time columns, telemetry messages)."""
from __future__ import annotations

import datetime
from typing import Any


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 date/time (UTC unless it names an offset)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is neither unix seconds nor an ISO 8601 date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
