"""Status-page outage history (CSV) → a canonical drop: clients, services, outages, maintenance.

Input: one row per published incident window, e.g. ``statuspage_downtime_windows.csv`` (GitHub's status
page): ``incident_id, downtime_start, downtime_end`` (UTC, ISO-8601), ``duration_minutes, source, title,
impact`` (minor, major, critical, none, maintenance). A status page names components in free-text titles,
so services come from configuration (``config/sources/statuspage_github.yaml``): per service, regular
expressions searched in the title; a title may name several services (one row per service).

The file is taken whole: every input row ends up in exactly one place, which the result counts
(``rows_read = rows_mapped + rows_unmapped``) and the load's quarantine shows:
- impact mapped to ``outage`` → ``outages.csv`` (source_ref = incident_id), ``maintenance`` →
  ``maintenance.csv`` (change_ref = incident_id, approved = true: announced, planned downtime);
- a title no service matches, or an impact the configuration does not know, is written with an empty
  service_code and the reason in the extra column ``unmapped``: the loader quarantines it (reason
  ``missing key: service_code``, the whole row, reason included, in the raw record);
- bad timestamps are passed on as they are: the loader quarantines them with its own reason.

Two windows of one service starting at the same minute (the same event published twice, or two incidents
opened together) would collide on the canonical key (service_code, start): they are merged into one row
whose end is the later end and whose source_ref lists both incident ids, so no window is lost. Overlapping
windows with different starts stay separate rows; the marts count overlapping time once.
Extra columns (``impact``, ``title``) travel with every row; the loader keeps them in quarantine records.
"""

from __future__ import annotations

import csv
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from slm_platform.settings import REPO_ROOT

DEFAULT_MAPPING = REPO_ROOT / "config" / "sources" / "statuspage_github.yaml"
SOURCE = "statuspage"
REQUIRED_COLUMNS = ("incident_id", "downtime_start", "downtime_end", "title", "impact")
KINDS = ("outage", "maintenance")
# Worst first, for the impact of merged windows.
SEVERITY = ("critical", "major", "minor", "maintenance", "none")

OUTAGE_HEADER = ("service_code", "started_at", "ended_at", "source_ref", "impact", "title", "unmapped")
MAINTENANCE_HEADER = (
    "service_code",
    "starts_at",
    "ends_at",
    "change_ref",
    "approved",
    "impact",
    "title",
    "unmapped",
)


class MappingError(ValueError):
    """The mapping file is invalid (the message names the file and the entry)."""


@dataclass(frozen=True)
class ServiceMatch:
    service_code: str
    service_name: str
    criticality: str
    patterns: tuple[re.Pattern, ...]

    def matches(self, title: str) -> bool:
        return any(p.search(title) for p in self.patterns)


@dataclass(frozen=True)
class StatusPageMapping:
    client_code: str
    client_name: str
    timezone: str
    country: str | None
    calendar_code: str
    impacts: dict[str, str]  # impact (lower case) -> outage | maintenance
    services: tuple[ServiceMatch, ...]
    source_file: str = "<inline>"

    def services_for(self, title: str) -> list[str]:
        return [s.service_code for s in self.services if s.matches(title)]


def load_mapping(path: Path | str = DEFAULT_MAPPING) -> StatusPageMapping:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    return mapping_from_dict(doc, str(path))


def mapping_from_dict(doc: object, source: str = "<inline>") -> StatusPageMapping:
    if not isinstance(doc, dict):
        raise MappingError(f"{source}: expected a mapping at the top level")
    client = doc.get("client")
    if not isinstance(client, dict) or not client.get("client_code") or not client.get("client_name"):
        raise MappingError(f"{source}: 'client' needs client_code and client_name (and timezone, country)")
    impacts = doc.get("impacts")
    if not isinstance(impacts, dict) or not impacts:
        raise MappingError(f"{source}: 'impacts' must map each impact to outage or maintenance")
    for impact, kind in impacts.items():
        if kind not in KINDS:
            raise MappingError(f"{source}: impacts.{impact}: {kind!r} is not one of {', '.join(KINDS)}")
    services = doc.get("services")
    if not isinstance(services, list) or not services:
        raise MappingError(f"{source}: 'services' must be a non-empty list")
    matches, seen = [], set()
    for i, entry in enumerate(services, start=1):
        where = f"{source}: services[{i}]"
        if not isinstance(entry, dict) or not entry.get("service_code") or not entry.get("match"):
            raise MappingError(f"{where}: needs service_code, service_name and match (a list of regexes)")
        code = str(entry["service_code"])
        if code in seen:
            raise MappingError(f"{where}: service_code {code} appears twice")
        seen.add(code)
        raw = entry["match"] if isinstance(entry["match"], list) else [entry["match"]]
        patterns = []
        for p in raw:
            try:
                # case-insensitive by default; a pattern can opt out locally with (?-i:...)
                patterns.append(re.compile(str(p), re.IGNORECASE))
            except re.error as exc:
                raise MappingError(f"{where} ({code}): bad regular expression {p!r}: {exc}") from exc
        matches.append(
            ServiceMatch(
                code,
                str(entry.get("service_name") or code),
                str(entry.get("criticality") or ""),
                tuple(patterns),
            )
        )
    return StatusPageMapping(
        client_code=str(client["client_code"]),
        client_name=str(client["client_name"]),
        timezone=str(client.get("timezone") or "UTC"),
        country=client.get("country"),
        calendar_code=str(doc.get("calendar_code") or "24x7"),
        impacts={str(k).lower(): str(v) for k, v in impacts.items()},
        services=tuple(matches),
        source_file=source,
    )


@dataclass
class ServiceStats:
    outages: int = 0  # input windows naming the service (before merging)
    outage_minutes: float = 0.0  # their summed length (overlaps counted twice: a ranking, not downtime)
    maintenance: int = 0
    maintenance_minutes: float = 0.0


@dataclass
class ConvertResult:
    out_dir: Path
    rows_read: int = 0
    rows_mapped: int = 0  # input rows that gave at least one outage or maintenance row
    rows_unmapped: int = 0  # input rows written for quarantine (no service, unknown impact)
    outage_rows: int = 0  # rows in outages.csv with a service (after merging)
    maintenance_rows: int = 0
    merged: int = 0  # service windows folded into another one with the same service and start
    unmapped_titles: dict[str, int] = field(default_factory=dict)
    by_service: dict[str, ServiceStats] = field(default_factory=dict)
    seconds: float = 0.0


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _worst(a: str, b: str) -> str:
    rank = {v: i for i, v in enumerate(SEVERITY)}
    return min(a, b, key=lambda v: rank.get(v, len(SEVERITY)))


def convert(csv_path: Path | str, mapping: StatusPageMapping, out_dir: Path | str) -> ConvertResult:
    """Write the canonical drop for ``csv_path`` into ``out_dir`` (replacing its files)."""
    t0 = time.monotonic()
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    res = ConvertResult(out_dir=out_dir)
    # (kind, service, start) -> row; a status page's history is small (thousands of rows), so it is held
    rows: dict[tuple, dict] = {}
    loose: list[tuple[str, dict]] = []  # rows that cannot be keyed (unmapped, unparsable times)
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: header lacks column(s) {', '.join(missing)} (header: {header})")
        for rec in reader:
            res.rows_read += 1
            _convert_row(rec, mapping, res, rows, loose)
    _write(out_dir, mapping, rows, loose, res)
    res.seconds = round(time.monotonic() - t0, 3)
    return res


def _convert_row(rec: dict, mapping: StatusPageMapping, res: ConvertResult, rows: dict, loose: list) -> None:
    title = (rec.get("title") or "").strip()
    impact = (rec.get("impact") or "").strip().lower()
    incident = (rec.get("incident_id") or "").strip()
    start, end = rec.get("downtime_start") or "", rec.get("downtime_end") or ""
    base = {"start": start, "end": end, "ref": incident, "impact": impact, "title": title}
    kind = mapping.impacts.get(impact)
    codes = mapping.services_for(title)
    if kind is None or not codes:
        res.rows_unmapped += 1
        if kind is None:
            why = f"impact {impact!r} is not mapped to outage or maintenance in {mapping.source_file}"
        else:
            why = f"the title names no service of {mapping.source_file}"
            res.unmapped_titles[title] = res.unmapped_titles.get(title, 0) + 1
        loose.append((kind or "outage", {**base, "service": "", "unmapped": why}))
        return
    res.rows_mapped += 1
    t_start, t_end = _parse(start), _parse(end)
    minutes = (t_end - t_start).total_seconds() / 60 if t_start and t_end else 0.0
    for code in codes:
        stats = res.by_service.setdefault(code, ServiceStats())
        if kind == "outage":
            stats.outages += 1
            stats.outage_minutes += minutes
        else:
            stats.maintenance += 1
            stats.maintenance_minutes += minutes
        row = {**base, "service": code, "unmapped": ""}
        if t_start is None or t_end is None:
            loose.append((kind, row))  # the loader says what is wrong with the times
            continue
        key = (kind, code, t_start)
        if key not in rows:
            rows[key] = {**row, "_end": t_end}
            continue
        kept = rows[key]
        res.merged += 1
        kept["ref"] = f"{kept['ref']},{incident}"
        kept["impact"] = _worst(kept["impact"], impact)
        kept["title"] = f"{kept['title']} | {title}"
        if t_end > kept["_end"]:
            kept["end"], kept["_end"] = end, t_end


def _write(out_dir: Path, mapping: StatusPageMapping, rows: dict, loose: list, res: ConvertResult) -> None:
    partial = out_dir / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with open(partial / "clients.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("client_code", "client_name", "timezone", "country"))
        w.writerow((mapping.client_code, mapping.client_name, mapping.timezone, mapping.country or ""))
    with open(partial / "services.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("service_code", "client_code", "service_name", "calendar_code", "criticality"))
        for s in mapping.services:
            w.writerow(
                (s.service_code, mapping.client_code, s.service_name, mapping.calendar_code, s.criticality)
            )
    with (
        open(partial / "outages.csv", "w", encoding="utf-8", newline="") as out_fh,
        open(partial / "maintenance.csv", "w", encoding="utf-8", newline="") as mnt_fh,
    ):
        outages, maint = csv.writer(out_fh, lineterminator="\n"), csv.writer(mnt_fh, lineterminator="\n")
        outages.writerow(OUTAGE_HEADER)
        maint.writerow(MAINTENANCE_HEADER)
        for kind, r in [((k[0]), r) for k, r in rows.items()] + loose:
            if kind == "maintenance":
                maint.writerow(
                    (
                        r["service"],
                        r["start"],
                        r["end"],
                        r["ref"],
                        "true",
                        r["impact"],
                        r["title"],
                        r["unmapped"],
                    )
                )
                res.maintenance_rows += bool(r["service"])
            else:
                outages.writerow(
                    (r["service"], r["start"], r["end"], r["ref"], r["impact"], r["title"], r["unmapped"])
                )
                res.outage_rows += bool(r["service"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("clients.csv", "services.csv", "outages.csv", "maintenance.csv"):
        (partial / name).replace(out_dir / name)
    shutil.rmtree(partial, ignore_errors=True)
