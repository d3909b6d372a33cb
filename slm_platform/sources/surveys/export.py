"""Convert a survey-tool export to a canonical ``surveys`` file and load it with the generic loader.

Input: the common "one row per response, one column per question" export (LimeSurvey "Export responses"
CSV with question codes as headings, Typeform CSV, or a JSON array of flat response objects), plus
optionally the survey's participants / invitations export (LimeSurvey's participant table). The mapping
(YAML, :mod:`slm_platform.sources.surveys.mapping`) says which column is which.

Rules, every one of them counted in :class:`ConvertResult`:

- One canonical row per response row: ``response_id`` = ``id_prefix`` + the export's response id;
  ``answered_at`` = the submission time (empty for a started but not submitted response: it is an
  invitation without an answer; its partial scores stay in raw but the marts count answers only).
- ``sent_at`` = the invitation's send time when the response's token has one, else the response's start
  time (an anonymous link has no invitation: the response is its own invitation).
- One canonical row per invitation that was sent and has no response row (``invitations.id_prefix`` +
  token, ``answered_at`` empty): these are what makes the response rate honest. An invitation never sent
  (LimeSurvey ``N``) is not one: it is counted, not written.
- Hidden fields (client, ticket, service, survey type) come from the response row, else from the
  invitation's attributes, else from ``defaults``; answer codes are translated by ``values``.
- Values are never judged here: an unreadable score, a timestamp without a zone when no ``timezone`` is
  configured, an unknown client, an answer before its invitation, a duplicate response id all go through
  as written, and the loader quarantines the row with its reason (``raw.quarantine``; the canonical file
  carries ``export_location`` = export file:line, kept in the quarantined record).

The responses are streamed; only the invitations (one small record per token) are held in memory.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from slm_platform.canonical import entity
from slm_platform.sources.surveys.mapping import HIDDEN, QUESTIONS, SurveyMapping

SURVEY_COLUMNS = entity("surveys").column_names
LOCATION_COLUMN = "export_location"
SCORES = ("csat", "nps", "ces")
NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


@dataclass
class ConvertResult:
    responses_read: int = 0
    responses_submitted: int = 0
    responses_not_submitted: int = 0  # started, not submitted: written as invitations without answer
    invitations_read: int = 0
    invitations_not_sent: int = 0  # never sent: not invitations, not written
    invitations_without_response: int = 0  # written as invitations without answer
    rows_written: int = 0
    seconds: float = 0.0
    out_file: Path | None = None
    load: list = field(default_factory=list)  # loader BatchResults, when loaded

    def reconciles(self) -> bool:
        return self.rows_written == self.responses_read + self.invitations_without_response


def _open_text(path: Path) -> IO[str]:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    """Nested JSON objects become dotted keys (Typeform's ``hidden.client``)."""
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line or item number, row) of a CSV export (header row) or a JSON export (an array of
    objects, or an object holding one under items/responses)."""
    if ".json" in path.name:
        with _open_text(path) as fh:
            doc = json.load(fh)
        items = doc
        if isinstance(doc, dict):
            items = doc.get("items", doc.get("responses"))
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON array of responses (or items/responses holding one)")
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: item {i} is not a JSON object")
            flat = _flatten(item)
            yield i, {k: "" if v is None else str(v) for k, v in flat.items()}
        return
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty file (a CSV export needs a header row)")
        end = reader.line_num  # physical line where the previous record ended
        for row in reader:
            start, end = end + 1, reader.line_num  # a quoted comment may span several lines
            if None in row:
                raise ValueError(f"{path}: line {start}: more fields than the header has")
            yield start, {k: (v or "") for k, v in row.items()}


def _check_columns(path: Path, row: dict[str, str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in row]
    if missing:
        raise ValueError(
            f"{path}: column(s) {', '.join(missing)} named in the mapping are not in the export "
            f"(it has: {', '.join(row)})"
        )


class _Converter:
    def __init__(self, mapping: SurveyMapping):
        self.m = mapping
        self.zone = ZoneInfo(mapping.timezone) if mapping.timezone else None

    def timestamp(self, value: str) -> str | None:
        """ISO-8601 with offset; a zone-less time is read in the configured zone. Unreadable: as written."""
        value = value.strip()
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
            for fmt in NAIVE_FORMATS:
                try:
                    parsed = datetime.strptime(value, fmt)
                    break
                except ValueError:
                    continue
        if parsed is None:
            return value  # the loader quarantines it: "bad timestamp in …"
        if parsed.tzinfo is None:
            if self.zone is None:
                return value  # the loader quarantines it: "timestamp without offset in …"
            parsed = parsed.replace(tzinfo=self.zone)  # fold=0: the earlier of a repeated hour
        return parsed.isoformat()

    def value(self, name: str, raw: str | None) -> str | None:
        if raw is None:
            return None
        raw = raw.strip()
        if not raw:
            return None
        codes = self.m.values.get(name)
        if codes and raw in codes:
            raw = codes[raw]
        if name in SCORES:
            try:
                number = float(raw)
                if number.is_integer():
                    return str(int(number))  # LimeSurvey writes numeric answers as 4.0000000000
            except ValueError:
                pass  # the loader quarantines it: "bad integer in …"
        return raw

    def hidden(self, name: str, row: dict[str, str], invitation: dict[str, str] | None) -> str | None:
        column = self.m.columns.get(name)
        found = self.value(name, row.get(column)) if column else None
        if found is None and invitation is not None:
            found = invitation.get(name)
        return found if found is not None else self.m.defaults.get(name)


def _read_invitations(conv: _Converter, path: Path, result: ConvertResult) -> dict[str, dict[str, str]]:
    """token -> {sent_at, hidden fields…, _line} of the invitations that were sent."""
    inv = conv.m.invitations
    assert inv is not None
    out: dict[str, dict[str, str]] = {}
    for lineno, row in read_rows(path):
        if result.invitations_read == 0:
            _check_columns(path, row, [inv.token, inv.sent_at, *inv.attributes.values()])
        result.invitations_read += 1
        sent = row.get(inv.sent_at, "").strip()
        if sent in inv.not_sent:
            result.invitations_not_sent += 1
            continue
        record = {"sent_at": conv.timestamp(sent) or "", "_line": str(lineno)}
        for name, column in inv.attributes.items():
            value = conv.value(name, row.get(column))
            if value is not None:
                record[name] = value
        # A token listed twice keeps its first row; the second is a duplicate id for the loader to refuse.
        token = row.get(inv.token, "").strip()
        key = token if token not in out else f"{token}\x00{lineno}"
        out[key] = {**record, "_token": token}
    return out


def convert(
    responses: Path | str,
    mapping: SurveyMapping,
    out_dir: Path | str,
    invitations: Path | str | None = None,
) -> ConvertResult:
    """Write ``out_dir/surveys.csv`` (canonical columns + export_location) from the export."""
    t0 = time.monotonic()
    responses, out_dir = Path(responses), Path(out_dir)
    m, conv, result = mapping, _Converter(mapping), ConvertResult()
    if invitations is not None and m.invitations is None:
        raise ValueError(f"{m.path}: an invitations file was given but the mapping has no invitations")
    invited = _read_invitations(conv, Path(invitations), result) if invitations is not None else {}
    answered_tokens: set[str] = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / "surveys.csv"
    needed = [m.response_id, m.submitted_at, *m.columns.values()]
    needed += [c for c in (m.started_at, m.token) if c]
    with open(out_file, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*SURVEY_COLUMNS, LOCATION_COLUMN])
        for lineno, row in read_rows(responses):
            if result.responses_read == 0:
                _check_columns(responses, row, needed)
            result.responses_read += 1
            token = row.get(m.token, "").strip() if m.token else ""
            invitation = invited.get(token) if token else None
            if token:
                answered_tokens.add(token)
            answered_at = conv.timestamp(row.get(m.submitted_at, ""))
            if answered_at:
                result.responses_submitted += 1
            else:
                result.responses_not_submitted += 1
            started = conv.timestamp(row.get(m.started_at, "")) if m.started_at else None
            sent_at = (invitation or {}).get("sent_at") or started
            rid = row.get(m.response_id, "").strip()
            canonical = {
                "response_id": f"{m.id_prefix}{rid}" if rid else None,
                "sent_at": sent_at,
                "answered_at": answered_at,
                **{q: conv.value(q, row.get(m.columns[q])) for q in QUESTIONS if q in m.columns},
                **{h: conv.hidden(h, row, invitation) for h in HIDDEN},
            }
            writer.writerow([*(canonical.get(c) for c in SURVEY_COLUMNS), f"{responses.name}:{lineno}"])
            result.rows_written += 1
        assert m.invitations is not None or not invited
        for record in invited.values():
            if record["_token"] in answered_tokens:
                continue
            canonical = {
                "response_id": f"{m.invitations.id_prefix}{record['_token']}" if record["_token"] else None,
                "sent_at": record["sent_at"] or None,
                **{h: record.get(h, m.defaults.get(h)) for h in HIDDEN},
            }
            location = f"{Path(invitations).name}:{record['_line']}"  # type: ignore[arg-type]
            writer.writerow([*(canonical.get(c) for c in SURVEY_COLUMNS), location])
            result.invitations_without_response += 1
            result.rows_written += 1
    result.out_file = out_file
    result.seconds = time.monotonic() - t0
    assert result.reconciles(), result
    return result
