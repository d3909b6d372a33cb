"""Convert a ServiceNow incident audit-log export (one CSV row per update of an incident) to a canonical drop.

The reference file is the UCI "Incident management process enriched event log" (36 columns, ``d/m/Y H:M``
local times without a zone, ``?`` = null). Choices, all counted in :class:`ConvertResult`:

- **Zone**: the file carries none, so the caller must name one (``timezone="Europe/Lisbon"``); without it the
  first timestamp is an error. Times are written in UTC with ``Z``. A wall time that occurs twice (the
  autumn DST fall-back hour) takes the *earlier* instant by default (``ambiguous="later"`` or ``"error"``
  to change it); a wall time that does not exist (the spring gap) is read with the offset in force before
  the gap, i.e. moved forward by the gap's length (``nonexistent="error"`` refuses it).
- **One ticket per incident** with the fields of its LAST update. Updates of an incident are put in time
  order (``sys_updated_at``; rows with the same time keep their file order, as the export does not say
  more). The file is read as a stream; it is grouped by incident (checked while reading). If an incident
  shows up again after another one, the conversion restarts through an on-disk SQLite sort, so memory
  never grows with the file.
- **Services**: one per ``location`` (``cmdb_ci`` is null in 99.8 % of the reference file), code
  ``<client>-<LOCATION-SLUG>``; a null location goes to the catch-all ``<client>-UNKNOWN-LOCATION``.
- **first_response_at**: the first update whose state is no longer ``New`` (an incident created in another
  state counts as answered at opening; one that never left ``New`` has none). The export cannot tell the
  caller's updates from the provider's (``Caller N`` and ``Updated by N`` are separate anonymised lists),
  so "the first update by someone other than the caller" is not available.
- **Events**: at opening (the earlier of ``opened_at`` and the first update) the initial status and
  assignment group (from null); then, between consecutive updates, every change of state, assignment
  group or priority at the later update's ``sys_updated_at``. Several changes of one field at the same
  minute merge into one (first ``from`` → last ``to``; A→B→A disappears): the canonical key is
  (ticket_id, occurred_at, field).
- **Source inconsistencies are kept**: a ticket resolved (or closed) before it was opened is written as is
  and counted; the loader quarantines it with its reason (and its events, as unknown tickets).
- ``servicenow_made_sla.csv`` (ticket_id, made_sla of the last update) keeps ServiceNow's own SLA verdict
  for comparison with ours; the loader ignores it (not a canonical file name).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slm_platform.canonical import entity
from slm_platform.sources.servicenow import mapping

NULL = "?"
REQUIRED_COLUMNS = (
    "number",
    "incident_state",
    "opened_at",
    "sys_updated_at",
    "location",
    "category",
    "priority",
    "assignment_group",
    "made_sla",
    "resolved_at",
    "closed_at",
)
MADE_SLA_FILE = "servicenow_made_sla.csv"
_CACHE_MAX = 200_000  # distinct timestamps remembered (bounded by the calendar span, not the rows)


class ExportError(ValueError):
    """The export cannot be converted (message names the file, line and value)."""


@dataclass
class ConvertResult:
    out_dir: Path
    rows_read: int = 0
    incidents: int = 0
    tickets: int = 0
    events: int = 0
    events_by_field: dict[str, int] = field(default_factory=dict)
    services: int = 0
    resolved_before_opened: int = 0
    closed_before_opened: int = 0
    ambiguous_times: int = 0  # timestamp values read in a DST fall-back hour
    nonexistent_times: int = 0  # timestamp values read in a DST spring gap
    incidents_reordered: int = 0  # incidents whose rows were not in sys_updated_at order in the file
    same_time_updates: int = 0  # rows with the same sys_updated_at as the incident's previous row
    events_merged: int = 0
    responses_clamped: int = 0  # first response before opened_at in the source
    no_response: int = 0
    unknown_states: int = 0  # rows whose state label has no letters (e.g. -100)
    grouped_input: bool = True  # False: the file was not grouped by incident and went through SQLite
    seconds: float = 0.0


class LocalTimes:
    """``d/m/Y H:M`` wall-clock text in one configured zone → ISO-8601 UTC with ``Z`` (None for ``?``)."""

    def __init__(self, zone: str | None, ambiguous: str = "earlier", nonexistent: str = "shift_forward"):
        if ambiguous not in ("earlier", "later", "error"):
            raise ValueError(f"ambiguous must be earlier, later or error, not {ambiguous!r}")
        if nonexistent not in ("shift_forward", "error"):
            raise ValueError(f"nonexistent must be shift_forward or error, not {nonexistent!r}")
        try:
            self.zone = ZoneInfo(zone) if zone else None
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ExportError(f"unknown time zone {zone!r}") from exc
        self.ambiguous_policy, self.nonexistent_policy = ambiguous, nonexistent
        self.ambiguous = self.nonexistent = 0
        self._cache: dict[str, tuple[str, str | None]] = {}

    def utc(self, text: str, where: str) -> str | None:
        if text == NULL or text == "":
            return None
        hit = self._cache.get(text)
        if hit is None:
            hit = self._convert(text, where)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[text] = hit
        iso, kind = hit
        if kind == "ambiguous":
            self.ambiguous += 1
        elif kind == "nonexistent":
            self.nonexistent += 1
        return iso

    def _convert(self, text: str, where: str) -> tuple[str, str | None]:
        m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})", text.strip())
        if not m:
            raise ExportError(f"{where}: {text!r} is not a d/m/Y H:M timestamp")
        if self.zone is None:
            raise ExportError(
                f"{where}: {text!r} has no time zone and none is configured: pass the zone the export was "
                f"written in (e.g. timezone='Europe/Lisbon', CLI --timezone)"
            )
        day, month, year, hour, minute = (int(g) for g in m.groups())
        try:
            naive = datetime(year, month, day, hour, minute)
        except ValueError as exc:
            raise ExportError(f"{where}: {text!r}: {exc}") from None
        early = naive.replace(tzinfo=self.zone, fold=0)
        late = naive.replace(tzinfo=self.zone, fold=1)
        kind = None
        chosen = early
        if early.utcoffset() != late.utcoffset():
            exists = early.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == naive
            if exists:  # the fall-back hour: the same wall time twice
                kind = "ambiguous"
                if self.ambiguous_policy == "error":
                    raise ExportError(f"{where}: {text!r} is ambiguous in {self.zone.key} (DST fall-back)")
                chosen = late if self.ambiguous_policy == "later" else early
            else:  # the spring gap: fold=0 reads it with the offset before the gap, i.e. shifted forward
                kind = "nonexistent"
                if self.nonexistent_policy == "error":
                    raise ExportError(f"{where}: {text!r} does not exist in {self.zone.key} (DST gap)")
        return chosen.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), kind


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").upper()


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


class _NotGrouped(Exception):
    pass


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    fh = _open_text(path)
    try:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ExportError(f"{path}: not a ServiceNow incident event log, missing column(s) {missing}")
        for row in reader:
            yield reader.line_num, row
    finally:
        fh.close()


def _grouped(path: Path, tmp: Path) -> Iterator[list[tuple[int, dict[str, str]]]]:
    """Contiguous runs of one incident; raises _NotGrouped if an incident comes back later."""
    seen = sqlite3.connect(tmp / "seen.sqlite")
    seen.execute("create table seen (number text primary key)")
    try:
        group: list[tuple[int, dict[str, str]]] = []
        for line, row in _rows(path):
            if group and row["number"] != group[0][1]["number"]:
                yield group
                seen.execute("insert into seen values (?)", (group[0][1]["number"],))
                group = []
            if not group and seen.execute("select 1 from seen where number = ?", (row["number"],)).fetchone():
                raise _NotGrouped(row["number"])
            group.append((line, row))
        if group:
            yield group
    finally:
        seen.close()


def _sorted(path: Path, tmp: Path) -> Iterator[list[tuple[int, dict[str, str]]]]:
    """Groups via an on-disk SQLite table ordered by (number, line): memory stays flat."""
    db = sqlite3.connect(tmp / "sort.sqlite")
    db.execute("create table r (number text, line integer, row text)")
    db.executemany(
        "insert into r values (?, ?, ?)", ((r["number"], n, json.dumps(r)) for n, r in _rows(path))
    )
    db.execute("create index r_key on r (number, line)")
    group: list[tuple[int, dict[str, str]]] = []
    try:
        for number, line, text in db.execute("select number, line, row from r order by number, line"):
            if group and number != group[0][1]["number"]:
                yield group
                group = []
            group.append((line, json.loads(text)))
        if group:
            yield group
    finally:
        db.close()


class _Converter:
    def __init__(self, path: Path, out_dir: Path, times: LocalTimes, client_code: str):
        self.path, self.out_dir, self.times, self.client = path, out_dir, times, client_code
        self.res = ConvertResult(out_dir=out_dir)
        self.locations: dict[str, str] = {}  # service_code -> name (bounded by distinct locations)

    def service_code(self, location: str) -> str:
        if location == NULL or not location.strip():
            code, name = f"{self.client}-UNKNOWN-LOCATION", "Unknown location (catch-all)"
        else:
            code, name = f"{self.client}-{_slug(location)}", location
        self.locations.setdefault(code, name)
        return code

    def ts(self, row: dict[str, str], col: str, line: int) -> str | None:
        return self.times.utc(row[col], f"{self.path.name} line {line} column {col}")

    def incident(self, group, out: mapping.DropWriter, sla: csv.writer) -> None:
        res = self.res
        res.incidents += 1
        res.rows_read += len(group)
        keyed = [
            (self.ts(row, "sys_updated_at", line) or "", i, line, row) for i, (line, row) in enumerate(group)
        ]
        ordered = sorted(keyed, key=lambda k: (k[0], k[1]))  # ties keep file order
        if [k[1] for k in ordered] != list(range(len(keyed))):
            res.incidents_reordered += 1
        last_upd, _, last_line, last = ordered[-1]
        number = last["number"]
        opened = self.ts(last, "opened_at", last_line)
        resolved = self.ts(last, "resolved_at", last_line)
        closed = self.ts(last, "closed_at", last_line)

        def g(row: dict[str, str], col: str) -> str | None:
            v = row[col]
            return None if v == NULL or v == "" else v

        def status(row: dict[str, str]) -> str | None:
            s = mapping.status_from_label(g(row, "incident_state"))
            if s == mapping.UNKNOWN_STATE:
                res.unknown_states += 1
            return s

        statuses = [status(k[3]) for k in ordered]
        first_upd = ordered[0][0]
        t0 = min(x for x in (opened, first_upd) if x) if (opened or first_upd) else None
        events: list[tuple[str, str, str | None, str | None]] = []
        if t0:
            if statuses[0]:
                events.append((t0, "status", None, statuses[0]))
            if g(ordered[0][3], "assignment_group"):
                events.append((t0, "assignment_group", None, g(ordered[0][3], "assignment_group")))
        for j in range(1, len(ordered)):
            prev, cur = ordered[j - 1][3], ordered[j][3]
            at = ordered[j][0]
            if at == ordered[j - 1][0]:
                res.same_time_updates += 1
            if statuses[j] != statuses[j - 1]:
                events.append((at, "status", statuses[j - 1], statuses[j]))
            if g(cur, "assignment_group") != g(prev, "assignment_group"):
                events.append(
                    (at, "assignment_group", g(prev, "assignment_group"), g(cur, "assignment_group"))
                )
            p_old, p_new = mapping.priority(g(prev, "priority")), mapping.priority(g(cur, "priority"))
            if p_new != p_old:
                events.append((at, "priority", p_old, p_new))
        events, merged = mapping.collapse_events(events)
        res.events_merged += merged
        status_events = [(e[0], e[2], e[3]) for e in events if e[1] == "status"]
        response = mapping.first_response(opened, status_events)
        raw_response = next((e[0] for e in status_events if e[2] not in (None, "new")), None)
        if raw_response is None:
            res.no_response += 1
        elif opened and raw_response < opened:
            res.responses_clamped += 1
        if opened and resolved and resolved < opened:
            res.resolved_before_opened += 1
        if opened and closed and closed < opened:
            res.closed_before_opened += 1
        out.ticket(
            {
                "ticket_id": number,
                "client_code": self.client,
                "service_code": self.service_code(last["location"]),
                "ticket_type": "incident",
                "priority": mapping.priority(g(last, "priority")),
                "opened_at": opened,
                "first_response_at": response,
                "resolved_at": resolved,
                "closed_at": closed,
                "status": statuses[-1],
                "assignment_group": g(last, "assignment_group"),
                "category": g(last, "category"),
                "updated_at": last_upd or opened,
            }
        )
        for occurred_at, fld, old, new in events:
            out.event(number, occurred_at, fld, old, new)
            res.events_by_field[fld] = res.events_by_field.get(fld, 0) + 1
        res.events += len(events)
        sla.writerow([number, g(last, "made_sla")])

    def run(self, groups: Iterator[list[tuple[int, dict[str, str]]]]) -> None:
        with (
            mapping.DropWriter(self.out_dir) as out,
            open(self.out_dir / MADE_SLA_FILE, "w", newline="", encoding="utf-8") as sla_fh,
        ):
            sla = csv.writer(sla_fh, lineterminator="\n")
            sla.writerow(["ticket_id", "made_sla"])
            for group in groups:
                self.incident(group, out, sla)
            self.res.tickets = out.tickets


def convert_export(
    path: Path | str,
    out_dir: Path | str,
    timezone: str | None,
    client_code: str = "SNOW",
    client_name: str | None = None,
    country: str | None = None,
    calendar_code: str | None = "24x7",
    ambiguous: str = "earlier",
    nonexistent: str = "shift_forward",
) -> ConvertResult:
    """Write clients/services/tickets/ticket_events (+ ``servicenow_made_sla.csv``) for ``load_drop``."""
    t0 = time.monotonic()
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    out_dir.mkdir(parents=True, exist_ok=True)
    times = LocalTimes(timezone, ambiguous, nonexistent)
    with tempfile.TemporaryDirectory(prefix="slm_snow_") as tmp:
        conv = _Converter(path, out_dir, times, client_code)
        try:
            conv.run(_grouped(path, Path(tmp)))
        except _NotGrouped:
            times.ambiguous = times.nonexistent = 0
            conv = _Converter(path, out_dir, times, client_code)
            conv.res.grouped_input = False
            conv.run(_sorted(path, Path(tmp)))
    res = conv.res
    with open(out_dir / "clients.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(entity("clients").column_names)
        w.writerow([client_code, client_name or client_code, timezone, country or ""])
    with open(out_dir / "services.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(entity("services").column_names)
        for code, name in sorted(conv.locations.items()):
            w.writerow([code, client_code, name, calendar_code or "", ""])
    res.services = len(conv.locations)
    res.ambiguous_times, res.nonexistent_times = times.ambiguous, times.nonexistent
    res.seconds = round(time.monotonic() - t0, 3)
    return res
