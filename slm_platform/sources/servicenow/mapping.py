"""ServiceNow values → the canonical ticket format, shared by the Table API extractor and the export importer.

The Table API hands out *codes* (state ``2``, priority ``1``, hold_reason ``1``) while a list export hands
out *labels* (``Active``, ``1 - Critical``, ``Awaiting User Info``): both are mapped here, once.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from slm_platform.canonical import entity

# incident.state codes (out-of-box choice list). 3 = On Hold is refined by hold_reason below.
STATE_CODES: dict[str, str] = {
    "1": "new",
    "2": "in_progress",
    "3": "on_hold",
    "6": "resolved",
    "7": "closed",
    "8": "cancelled",
}
# incident.hold_reason codes: only "Awaiting Caller" pauses the client's SLA clock by default.
HOLD_REASONS: dict[str, str] = {
    "1": "pending_customer",  # Awaiting Caller
    "3": "awaiting_problem",
    "4": "awaiting_vendor",
    "5": "awaiting_change",
}
# Labels of older releases / list exports (incident_state). Unknown labels become snake_case.
STATE_LABELS: dict[str, str] = {
    "new": "new",
    "active": "in_progress",
    "in progress": "in_progress",
    "awaiting user info": "pending_customer",
    "awaiting caller": "pending_customer",
    "awaiting vendor": "awaiting_vendor",
    "awaiting problem": "awaiting_problem",
    "awaiting evidence": "awaiting_evidence",
    "awaiting change": "awaiting_change",
    "on hold": "on_hold",
    "resolved": "resolved",
    "closed": "closed",
    "canceled": "cancelled",
    "cancelled": "cancelled",
}
UNKNOWN_STATE = "unknown"
EVENT_FIELDS = ("status", "assignment_group", "priority")
TICKET_COLUMNS = entity("tickets").column_names
EVENT_COLUMNS = entity("ticket_events").column_names


def status_from_code(state: str | None, hold_reason: str | None = None) -> str | None:
    """Canonical status of an incident ``state`` code (``3`` On Hold is refined by ``hold_reason``)."""
    if state in (None, ""):
        return None
    if state == "3" and hold_reason:
        return HOLD_REASONS.get(hold_reason, "on_hold")
    return STATE_CODES.get(state, UNKNOWN_STATE)


@functools.lru_cache(maxsize=1024)
def status_from_label(label: str | None) -> str | None:
    """Canonical status of an exported state label; labels we do not know keep their words in snake_case.

    A label without any letter (the export holds a handful of ``-100``) is ``unknown``.
    """
    if label in (None, ""):
        return None
    key = label.strip().lower()
    if key in STATE_LABELS:
        return STATE_LABELS[key]
    slug = re.sub(r"[^a-z0-9]+", "_", key).strip("_")
    return slug if re.search("[a-z]", slug) else UNKNOWN_STATE


@functools.lru_cache(maxsize=1024)
def priority(value: str | None) -> str | None:
    """``1`` / ``1 - Critical`` → ``P1`` … ``4 - Low`` → ``P4``; ``5 - Planning`` → ``P4`` (our lowest)."""
    if value in (None, ""):
        return None
    m = re.match(r"\s*(\d)", value)
    if not m:
        return None
    n = int(m.group(1))
    return f"P{min(max(n, 1), 4)}" if n >= 1 else None


def api_timestamp(value: str | None) -> str | None:
    """Table API value ``YYYY-MM-DD HH:MM:SS`` (always UTC) → ISO-8601 with ``Z``."""
    if not value:
        return None
    dt = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def api_query_time(dt: datetime) -> str:
    """A datetime → the UTC literal an encoded query compares ``sys_updated_on`` with."""
    if dt.tzinfo is None:
        raise ValueError(f"{dt!r} has no time zone: pass an aware datetime (ServiceNow compares in UTC)")
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def first_response(
    opened_at: str | None, status_events: Iterable[tuple[str, str | None, str | None]]
) -> str | None:
    """When the provider first acted: the first status event leaving ``new``.

    ``status_events`` are (occurred_at, from, to) in time order with ISO-8601 UTC ``Z`` strings (they sort as
    text). An incident created directly in another status counts as answered at opening; one that never
    left ``new`` has no response. A response cannot precede the opening: it is clamped to ``opened_at``.
    """
    for occurred_at, _from, to in status_events:
        if to is None or to == "new":
            continue
        if opened_at is None:
            return occurred_at
        return max(occurred_at, opened_at)
    return None


class DropWriter:
    """Streams canonical ``tickets.csv`` and ``ticket_events.csv`` rows to a drop folder."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._fh = {
            name: open(self.out_dir / f"{name}.csv", "w", newline="", encoding="utf-8")
            for name in ("tickets", "ticket_events")
        }
        self._w = {name: csv.writer(fh, lineterminator="\n") for name, fh in self._fh.items()}
        self._w["tickets"].writerow(TICKET_COLUMNS)
        self._w["ticket_events"].writerow(EVENT_COLUMNS)
        self.tickets = 0
        self.events = 0

    def ticket(self, row: dict[str, object]) -> None:
        self._w["tickets"].writerow([_cell(row.get(c)) for c in TICKET_COLUMNS])
        self.tickets += 1

    def event(self, ticket_id: str, occurred_at: str, field: str, from_value, to_value) -> None:
        self._w["ticket_events"].writerow([ticket_id, occurred_at, field, _cell(from_value), _cell(to_value)])
        self.events += 1

    def close(self) -> None:
        for fh in self._fh.values():
            fh.close()

    def __enter__(self) -> DropWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def collapse_events(
    events: list[tuple[str, str, str | None, str | None]],
) -> tuple[list[tuple[str, str, str | None, str | None]], int]:
    """Merge events of one ticket that share (occurred_at, field): the canonical key allows one.

    Input (occurred_at, field, from, to) in time order (ties in source order). Several changes of one field
    within the same second/minute become one change from the first ``from`` to the last ``to``; a merge that
    ends where it started (A→B→A) disappears. Returns (events, how many source events were merged away).
    """
    out: list[tuple[str, str, str | None, str | None]] = []
    index: dict[tuple[str, str], int] = {}
    merged = 0
    for occurred_at, field, old, new in events:
        k = (occurred_at, field)
        if k in index:
            i = index[k]
            out[i] = (occurred_at, field, out[i][2], new)
            merged += 1
        else:
            index[k] = len(out)
            out.append((occurred_at, field, old, new))
    kept = [e for e in out if e[2] != e[3]]
    return kept, merged + (len(out) - len(kept))
