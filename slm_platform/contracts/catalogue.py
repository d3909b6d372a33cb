"""The contract catalogue: calendars and agreements (SLA / OLA / UC), loaded and validated.

Format: the "Contracts and calendars" section of the canonical import format. A catalogue with any error is
refused as a whole; each error names the file, the entry (``agreements[2] (SLA-ACME-2026)``) and the field.

Conventions fixed here (the format leaves them open):
- ``valid_from`` and ``valid_to`` are both inclusive days; ``valid_to: null`` is open-ended. Two versions of
  one agreement id may not share a day, so an amendment starting 2026-07-01 needs the previous version to end
  on 2026-06-30 at the latest.
- Unknown fields are refused (a typo such as ``target_minute`` would otherwise silently drop an objective).
- ``supported_by`` names OLAs or UCs (an SLA underpins nothing); chains may not loop.
"""

from __future__ import annotations

import re
import sys
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

import yaml

from slm_platform.settings import REPO_ROOT

DEFAULT_CATALOGUE = REPO_ROOT / "contracts" / "catalogue.yaml"

KINDS = ("SLA", "OLA", "UC")
METRICS = ("response", "resolution", "availability", "csat")
TICKET_METRICS = ("response", "resolution")
TICKET_TYPES = ("incident", "request", "complaint", "problem", "change")
PRIORITIES = ("P1", "P2", "P3", "P4")
PERIODS = ("month", "quarter", "year")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_PAUSE_STATUSES = ("pending_customer",)

_TOP_FIELDS = {"calendars", "agreements"}
_CALENDAR_FIELDS = {"code", "timezone", "hours", "holidays", "closed", "description"}
_AGREEMENT_FIELDS = {
    "id", "kind", "party", "valid_from", "valid_to", "services", "pause_statuses", "supported_by",
    "objectives", "description",
}
# Fields each metric takes: (required, optional).
_TICKET_OBJECTIVE = {"metric", "ticket_type", "priority", "target_minutes", "calendar", "threshold_pct"}
_OBJECTIVE_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "response": (_TICKET_OBJECTIVE, set()),
    "resolution": (_TICKET_OBJECTIVE, set()),
    "availability": ({"metric", "target_pct", "calendar", "period"}, {"measured_by"}),
    "csat": ({"metric", "target_pct", "period"}, set()),
}
# How an availability objective's time is known: "checks" (only time a check or a reported outage covers is
# measured; the rest is unmeasured) or "reported_outages" (the source lists every outage, so a minute without
# a reported outage counts as up: a status page). Declared, never guessed from the data.
MEASURED_BY = ("checks", "reported_outages")
_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"
_HOURS_RE = re.compile(rf"^({_HHMM})-({_HHMM}|24:00)$")


@dataclass(frozen=True)
class ValidationError:
    file: str
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.field}: {self.message}"


class CatalogueError(ValueError):
    """The catalogue was refused; ``errors`` lists every reason."""

    def __init__(self, errors: list[ValidationError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class Calendar:
    code: str
    timezone: str
    # None = always open (24x7); otherwise weekday -> sorted (start, end) intervals; end may be 24:00 (None).
    hours: Mapping[str, tuple[tuple[time, time | None], ...]] | None
    holidays: str | None = None
    closed: tuple[date, ...] = ()

    @property
    def always_open(self) -> bool:
        return self.hours is None


@dataclass(frozen=True)
class Objective:
    metric: str
    calendar: str | None = None
    ticket_type: str | None = None
    priority: str | None = None
    target_minutes: float | None = None
    threshold_pct: float | None = None
    target_pct: float | None = None
    period: str | None = None
    measured_by: str | None = None  # availability only; None there means "checks"


@dataclass(frozen=True)
class Agreement:
    id: str
    kind: str
    party: str
    valid_from: date
    valid_to: date | None
    services: tuple[str, ...] | None  # None = every service of the party
    pause_statuses: tuple[str, ...]
    supported_by: tuple[str, ...]
    objectives: tuple[Objective, ...]

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class Catalogue:
    path: Path
    calendars: Mapping[str, Calendar]
    agreements: tuple[Agreement, ...]

    def versions(self, agreement_id: str) -> list[Agreement]:
        return sorted((a for a in self.agreements if a.id == agreement_id), key=lambda a: a.valid_from)

    def agreement(self, agreement_id: str, on: date) -> Agreement | None:
        """The version of ``agreement_id`` in force on ``on`` (versions never overlap)."""
        return next((a for a in self.versions(agreement_id) if a.in_force(on)), None)


# --------------------------------------------------------------------------------------------- parsing


def _label(section: str, index: int, item: Any) -> str:
    key = "code" if section == "calendars" else "id"
    name = item.get(key) if isinstance(item, dict) else None
    return f"{section}[{index}] ({name})" if isinstance(name, str) and name else f"{section}[{index}]"


def _duplicate_keys(node: yaml.Node, path: str = "") -> Iterator[tuple[str, str, int]]:
    """Yield (path, key, line) for each key repeated in a mapping (PyYAML silently keeps the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key in seen:
                yield child, key, key_node.start_mark.line + 1
            seen.add(key)
            yield from _duplicate_keys(value_node, child)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{i}]")


def _split_path(path: str, data: Any) -> tuple[str, str]:
    """Turn ``agreements[2].objectives[0].metric`` into (entry label, field path) using the loaded data."""
    m = re.match(r"^(calendars|agreements)\[(\d+)\]\.?(.*)$", path)
    if not m or not isinstance(data, dict):
        return "(top level)", path
    section, index, rest = m.group(1), int(m.group(2)), m.group(3)
    items = data.get(section)
    item = items[index] if isinstance(items, list) and index < len(items) else None
    return _label(section, index, item), rest or "(entry)"


class _Checker:
    def __init__(self, file: str):
        self.file = file
        self.errors: list[ValidationError] = []

    def err(self, entry: str, field_: str, message: str) -> None:
        self.errors.append(ValidationError(self.file, entry, field_, message))

    # --- small typed readers; each returns None after reporting a problem

    def text(self, entry: str, item: dict, key: str, required: bool = True) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                self.err(entry, key, "is required")
            return None
        if isinstance(value, bool):
            # YAML 1.1 reads bare NO/ON/YES as booleans (Norway's code is NO).
            self.err(entry, key, f"expected text, got the boolean {value!r}: quote the value")
            return None
        if not isinstance(value, str | int | float) or str(value).strip() == "":
            self.err(entry, key, f"expected non-empty text, got {value!r}")
            return None
        return str(value)

    def day(self, entry: str, item: dict, key: str, required: bool = True) -> date | None:
        value = item.get(key)
        if value is None:
            if required:
                self.err(entry, key, "is required (YYYY-MM-DD)")
            return None
        if (parsed := _as_date(value)) is not None:
            return parsed
        self.err(entry, key, f"expected a date YYYY-MM-DD, got {value!r}")
        return None

    def text_list(self, entry: str, item: dict, key: str) -> tuple[str, ...] | None:
        value = item.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.err(entry, key, f"expected a list of non-empty names, got {value!r}")
            return None
        if len(set(value)) != len(value):
            self.err(entry, key, "lists a name twice")
        return tuple(value)

    def positive(self, entry: str, field_: str, value: Any, pct: bool) -> float | None:
        if value is None:
            self.err(entry, field_, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.err(entry, field_, f"expected a number, got {value!r}")
            return None
        if value <= 0:
            self.err(entry, field_, f"must be > 0, got {value}")
            return None
        if pct and value > 100:
            self.err(entry, field_, f"is a percentage: must be in (0, 100], got {value}")
            return None
        return float(value)

    def unknown_fields(self, entry: str, item: dict, allowed: set[str], prefix: str = "") -> None:
        for key in item:
            if key not in allowed:
                self.err(entry, f"{prefix}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _parse_hours(chk: _Checker, entry: str, value: Any) -> tuple[bool, dict | None]:
    """Return (ok, hours) where hours None means always open."""
    if value == "always":
        return True, None
    if not isinstance(value, dict) or not value:
        chk.err(entry, "hours",
                f"expected 'always' or a mapping of weekdays to 'HH:MM-HH:MM' lists, got {value!r}")
        return False, None
    ok = True
    hours: dict[str, tuple[tuple[time, time | None], ...]] = {}
    for day, spans in value.items():
        where = f"hours.{day}"
        if day not in DAYS:
            chk.err(entry, where, f"unknown weekday (use {', '.join(DAYS)})")
            ok = False
            continue
        if not isinstance(spans, list):
            chk.err(entry, where, f"expected a list of 'HH:MM-HH:MM', got {spans!r}")
            ok = False
            continue
        parsed: list[tuple[time, time | None]] = []
        for i, span in enumerate(spans):
            m = _HOURS_RE.match(span) if isinstance(span, str) else None
            if not m:
                chk.err(entry, f"{where}[{i}]", f"bad hours {span!r}: expected 'HH:MM-HH:MM' (24 h clock)")
                ok = False
                continue
            start = time.fromisoformat(m.group(1))
            end = None if m.group(2) == "24:00" else time.fromisoformat(m.group(2))
            if end is not None and end <= start:
                chk.err(entry, f"{where}[{i}]", f"bad hours {span!r}: start must be before end")
                ok = False
                continue
            parsed.append((start, end))
        parsed.sort(key=lambda s: s[0])
        for (_, end1), (start2, _) in zip(parsed, parsed[1:], strict=False):
            if end1 is None or start2 < end1:
                chk.err(entry, where, "intervals overlap")
                ok = False
        hours[day] = tuple(parsed)
    if ok and not any(hours.values()):
        chk.err(entry, "hours", "no open hours on any day")
        ok = False
    return ok, hours


def _parse_calendar(chk: _Checker, entry: str, item: dict, countries: Mapping[str, Any]) -> Calendar | None:
    before = len(chk.errors)
    chk.unknown_fields(entry, item, _CALENDAR_FIELDS)
    code = chk.text(entry, item, "code")
    tz = chk.text(entry, item, "timezone")
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            chk.err(entry, "timezone", f"unknown IANA time zone {tz!r}")
    if "hours" not in item:
        chk.err(entry, "hours", "is required ('always' or weekday hours)")
        hours = None
    else:
        _, hours = _parse_hours(chk, entry, item["hours"])
    country = chk.text(entry, item, "holidays", required=False)
    if country is not None and (len(country) != 2 or country not in countries):
        chk.err(entry, "holidays",
                f"unknown holiday country {country!r} (ISO 3166-1 alpha-2 supported by holidays)")
    closed: list[date] = []
    raw_closed = item.get("closed")
    if raw_closed is not None:
        if not isinstance(raw_closed, list):
            chk.err(entry, "closed", f"expected a list of dates, got {raw_closed!r}")
        else:
            for i, d in enumerate(raw_closed):
                parsed = chk.day(entry, {f"closed[{i}]": d}, f"closed[{i}]")
                if parsed:
                    closed.append(parsed)
    if len(chk.errors) > before or code is None or tz is None:
        return None
    return Calendar(code, tz, hours, country, tuple(sorted(set(closed))))


def _parse_objective(
    chk: _Checker, entry: str, where: str, item: Any, calendars: set[str]
) -> Objective | None:
    if not isinstance(item, dict):
        chk.err(entry, where, f"expected a mapping, got {item!r}")
        return None
    before = len(chk.errors)
    metric = item.get("metric")
    if metric not in METRICS:
        chk.err(entry, f"{where}.metric", f"unknown metric {metric!r} (use {', '.join(METRICS)})")
        return None
    required, optional = _OBJECTIVE_FIELDS[metric]
    chk.unknown_fields(entry, item, required | optional, prefix=f"{where}.")
    for key in sorted(required - item.keys()):
        chk.err(entry, f"{where}.{key}", f"is required for metric {metric}")
    values: dict[str, Any] = {"metric": metric}
    if "ticket_type" in required and "ticket_type" in item:
        if item["ticket_type"] not in TICKET_TYPES:
            chk.err(entry, f"{where}.ticket_type",
                    f"unknown ticket_type {item['ticket_type']!r} (use {', '.join(TICKET_TYPES)})")
        values["ticket_type"] = item["ticket_type"]
    if "priority" in required and "priority" in item:
        if item["priority"] not in PRIORITIES:
            chk.err(entry, f"{where}.priority",
                    f"unknown priority {item['priority']!r} (use {', '.join(PRIORITIES)})")
        values["priority"] = item["priority"]
    for key, pct in (("target_minutes", False), ("threshold_pct", True), ("target_pct", True)):
        if key in required and key in item:
            values[key] = chk.positive(entry, f"{where}.{key}", item[key], pct)
    if "calendar" in required and "calendar" in item:
        if item["calendar"] not in calendars:
            chk.err(entry, f"{where}.calendar", f"unknown calendar {item['calendar']!r}")
        values["calendar"] = item["calendar"]
    if "period" in required and "period" in item:
        if item["period"] not in PERIODS:
            chk.err(entry, f"{where}.period", f"unknown period {item['period']!r} (use {', '.join(PERIODS)})")
        values["period"] = item["period"]
    if "measured_by" in optional:
        measured_by = item.get("measured_by", "checks")
        if measured_by not in MEASURED_BY:
            chk.err(entry, f"{where}.measured_by",
                    f"unknown measured_by {measured_by!r} (use {', '.join(MEASURED_BY)})")
        values["measured_by"] = measured_by
    if len(chk.errors) > before:
        return None
    return Objective(**values)


def _objective_key(o: Objective) -> tuple:
    return (o.metric, o.ticket_type, o.priority)


def _parse_agreement(chk: _Checker, entry: str, item: dict, calendars: set[str]) -> Agreement | None:
    before = len(chk.errors)
    chk.unknown_fields(entry, item, _AGREEMENT_FIELDS)
    agreement_id = chk.text(entry, item, "id")
    kind = item.get("kind")
    if kind not in KINDS:
        chk.err(entry, "kind", f"unknown kind {kind!r} (use {', '.join(KINDS)})")
    party = chk.text(entry, item, "party")
    valid_from = chk.day(entry, item, "valid_from")
    valid_to = chk.day(entry, item, "valid_to", required=False)
    if valid_from and valid_to and valid_to < valid_from:
        chk.err(entry, "valid_to", f"{valid_to} is before valid_from {valid_from}")
    services = chk.text_list(entry, item, "services")
    pause = chk.text_list(entry, item, "pause_statuses")
    supported_by = chk.text_list(entry, item, "supported_by") or ()
    if agreement_id and agreement_id in supported_by:
        chk.err(entry, "supported_by", "an agreement cannot support itself")
    objectives: list[Objective] = []
    raw = item.get("objectives")
    if not isinstance(raw, list) or not raw:
        chk.err(entry, "objectives", "expected a non-empty list of objectives")
    else:
        seen: dict[tuple, int] = {}
        for i, o in enumerate(raw):
            obj = _parse_objective(chk, entry, f"objectives[{i}]", o, calendars)
            if obj is None:
                continue
            key = _objective_key(obj)
            if key in seen:
                chk.err(entry, f"objectives[{i}]",
                        f"same metric/ticket_type/priority as objectives[{seen[key]}]: which one applies?")
            seen.setdefault(key, i)
            objectives.append(obj)
    if len(chk.errors) > before:
        return None
    assert agreement_id and party and valid_from  # reported above otherwise
    return Agreement(
        id=agreement_id, kind=kind, party=party, valid_from=valid_from, valid_to=valid_to,
        services=services, pause_statuses=pause if pause is not None else DEFAULT_PAUSE_STATUSES,
        supported_by=supported_by, objectives=tuple(objectives),
    )


def _as_date(value: Any) -> date | None:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _first_index(items: list, agreement_id: str) -> int:
    return next(i for i, it in enumerate(items) if isinstance(it, dict) and it.get("id") == agreement_id)


def _check_cross_references(chk: _Checker, items: list, labels: list[str]) -> None:
    """Overlapping versions, unknown or wrong-kind supported_by, loops in supported_by chains."""
    kinds: dict[str, set[str]] = {}
    versions: dict[str, list[tuple[int, date, date | None]]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        kinds.setdefault(item["id"], set()).add(str(item.get("kind")))
        vf, vt = _as_date(item.get("valid_from")), _as_date(item.get("valid_to"))
        if vf is not None and (vt is None or vt >= vf):
            versions.setdefault(item["id"], []).append((i, vf, vt))
    for vs in versions.values():
        vs.sort(key=lambda v: v[1])
        for (i, _, to1), (j, from2, _) in zip(vs, vs[1:], strict=False):
            if to1 is None or from2 <= to1:
                ends = "is open-ended" if to1 is None else f"runs to {to1}"
                chk.err(labels[j], "valid_from",
                        f"overlaps {labels[i]} (which {ends}): versions of one agreement may not share a day")
    for agreement_id, ks in kinds.items():
        if len(ks) > 1:
            first = _first_index(items, agreement_id)
            chk.err(labels[first], "kind", f"versions of {agreement_id} disagree on kind: {sorted(ks)}")
    graph: dict[str, set[str]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        sup = item.get("supported_by") or []
        if not isinstance(sup, list):
            continue
        for j, ref in enumerate(sup):
            if ref not in kinds:
                chk.err(labels[i], f"supported_by[{j}]", f"names agreement {ref!r}, which does not exist")
            elif "SLA" in kinds[ref]:
                chk.err(labels[i], f"supported_by[{j}]",
                        f"{ref!r} is an SLA: only OLAs and UCs support others")
            else:
                graph.setdefault(str(item.get("id")), set()).add(ref)
    # A loop would make a chain's total target infinite.
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (loop := visit(nxt, [*trail, node])):
                return loop
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (loop := visit(node, [])):
            chain = " -> ".join(loop)
            chk.err(labels[_first_index(items, loop[0])], "supported_by", f"chain loops: {chain}")
            break


def _load(path: Path) -> tuple[Catalogue | None, list[ValidationError]]:
    file = str(path)
    chk = _Checker(file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        chk.err("(file)", "-", f"cannot read: {exc.strerror or exc}")
        return None, chk.errors
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        chk.err(where, "-", f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return None, chk.errors
    if not isinstance(data, dict):
        chk.err("(top level)", "-", "expected a mapping with 'calendars' and 'agreements'")
        return None, chk.errors
    for dup_path, key, line in _duplicate_keys(node) if node is not None else ():
        entry, field_ = _split_path(dup_path, data)
        chk.err(entry, field_, f"key {key!r} appears twice (line {line}); YAML would silently keep the last")
    chk.unknown_fields("(top level)", data, _TOP_FIELDS)

    calendars: dict[str, Calendar] = {}
    raw_cals = data.get("calendars")
    if not isinstance(raw_cals, list):
        chk.err("(top level)", "calendars", "expected a list of calendars")
        raw_cals = []
    codes = {c["code"] for c in raw_cals if isinstance(c, dict) and isinstance(c.get("code"), str)}
    countries = _holiday_countries()
    for i, item in enumerate(raw_cals):
        entry = _label("calendars", i, item)
        if not isinstance(item, dict):
            chk.err(entry, "-", f"expected a mapping, got {item!r}")
            continue
        cal = _parse_calendar(chk, entry, item, countries)
        if cal is None:
            continue
        if cal.code in calendars:
            chk.err(entry, "code", f"calendar {cal.code!r} is defined twice")
        calendars[cal.code] = cal

    agreements: list[Agreement] = []
    raw_agr = data.get("agreements")
    if not isinstance(raw_agr, list):
        chk.err("(top level)", "agreements", "expected a list of agreements")
        raw_agr = []
    labels = [_label("agreements", i, item) for i, item in enumerate(raw_agr)]
    for i, item in enumerate(raw_agr):
        if not isinstance(item, dict):
            chk.err(labels[i], "-", f"expected a mapping, got {item!r}")
            continue
        agreement = _parse_agreement(chk, labels[i], item, codes)
        if agreement is not None:
            agreements.append(agreement)
    _check_cross_references(chk, raw_agr, labels)
    if chk.errors:
        return None, chk.errors
    return Catalogue(path, calendars, tuple(agreements)), []


def _holiday_countries() -> Mapping[str, Any]:
    import holidays  # imported late: ~0.3 s, only needed when a catalogue is read

    return holidays.list_supported_countries()


def validate(path: Path | str) -> list[ValidationError]:
    """Every problem in the catalogue at ``path``; empty when it is valid."""
    return _load(Path(path))[1]


def load_catalogue(path: Path | str) -> Catalogue:
    """The catalogue at ``path``; raises CatalogueError (with every error) if anything is wrong."""
    catalogue, errors = _load(Path(path))
    if errors or catalogue is None:
        raise CatalogueError(errors)
    return catalogue


# ------------------------------------------------------------------------------------ OLA / UC support


@dataclass(frozen=True)
class SupportFinding:
    """Whether the OLA/UC chain under one SLA ticket objective fits inside its target."""

    sla_id: str
    objective: Objective
    chain: tuple[tuple[str, float], ...]  # (agreement id, target minutes), in supported_by order
    missing: tuple[str, ...] = field(default=())  # underpinning agreements with no matching objective
    total_minutes: float = 0.0

    @property
    def supported(self) -> bool:
        assert self.objective.target_minutes is not None
        return self.total_minutes <= self.objective.target_minutes

    @property
    def cause(self) -> str | None:
        """The largest contributor when not supported (the one to renegotiate first)."""
        if self.supported or not self.chain:
            return None
        return max(self.chain, key=lambda c: c[1])[0]


def _expand_chain(catalogue: Catalogue, ids: tuple[str, ...], on: date, seen: list[str]) -> list[str]:
    """Depth-first, each agreement once (the validator refuses loops; ``seen`` guards anyway)."""
    for ref in ids:
        if ref in seen:
            continue
        seen.append(ref)
        under = catalogue.agreement(ref, on)
        if under is not None:
            _expand_chain(catalogue, under.supported_by, on, seen)
    return seen


def support_findings(catalogue: Catalogue, on: date) -> list[SupportFinding]:
    """For each SLA resolution objective in force on ``on``: the sum of its OLA/UC chain's matching targets.

    The chain is the SLA's ``supported_by`` list, expanded depth-first through the OLAs' own ``supported_by``;
    an underpinning agreement matches on ticket_type and priority. Minutes are summed as written, whatever
    each objective's calendar (the domain's rule: the chain's targets must fit inside the SLA's).
    """
    findings: list[SupportFinding] = []
    for sla in (a for a in catalogue.agreements if a.kind == "SLA" and a.in_force(on)):
        chain_ids = _expand_chain(catalogue, sla.supported_by, on, [])
        if not chain_ids:
            continue
        for obj in (o for o in sla.objectives if o.metric == "resolution"):
            chain: list[tuple[str, float]] = []
            missing: list[str] = []
            for ref in chain_ids:
                under = catalogue.agreement(ref, on)
                match = None if under is None else next(
                    (o for o in under.objectives if _objective_key(o) == _objective_key(obj)), None
                )
                if match is None or match.target_minutes is None:
                    missing.append(ref)
                else:
                    chain.append((ref, match.target_minutes))
            if not chain:
                continue  # nothing underpins this objective: nothing to compare
            findings.append(SupportFinding(
                sla.id, obj, tuple(chain), tuple(missing), sum(m for _, m in chain)
            ))
    return findings


# ----------------------------------------------------------------------------------------------- CLI


def main_validate(path: Path | None = None) -> int:
    """``slm contracts validate [FILE]``: print ``OK: …`` or every error, one a line; 0 when valid."""
    target = Path(path) if path is not None else DEFAULT_CATALOGUE
    errors = validate(target)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"REFUSED: {target}: {len(errors)} error(s)", file=sys.stderr)
        return 1
    catalogue = load_catalogue(target)
    print(f"OK: {len(catalogue.calendars)} calendars, {len(catalogue.agreements)} agreements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_validate(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
