"""The mapping of a survey-tool export onto canonical ``surveys`` columns, read from YAML.

Which column holds which question (csat / nps / ces / comment) and which hidden field (client, ticket,
service, survey type) is survey-specific, so it is configuration; see
``config/sources/survey_export_sample.yaml`` for every key, documented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

QUESTIONS = ("csat", "nps", "ces", "comment")
HIDDEN = ("client_code", "ticket_id", "service_code", "survey_type")
MAPPED = QUESTIONS + HIDDEN


class MappingError(ValueError):
    """The mapping file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class InvitationMapping:
    """A participants / invitations export: one row per invitation, joined to responses by token."""

    token: str
    sent_at: str
    id_prefix: str
    not_sent: tuple[str, ...] = ("", "N")  # values of sent_at meaning "never sent" (LimeSurvey: N)
    attributes: dict[str, str] = field(default_factory=dict)  # canonical hidden field -> column


@dataclass(frozen=True)
class SurveyMapping:
    path: Path
    source: str
    timezone: str | None  # zone of the export's zone-less timestamps; None = they are refused
    response_id: str
    id_prefix: str
    submitted_at: str
    started_at: str | None
    token: str | None
    columns: dict[str, str]  # canonical question or hidden field -> response column
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # canonical field -> {code: value}
    defaults: dict[str, str] = field(default_factory=dict)  # canonical field -> constant
    invitations: InvitationMapping | None = None


def _req(d: dict, key: str, where: str, path: Path) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise MappingError(f"{path}: {where}.{key} is required (a column name)")
    return value


def _str_map(d: object, where: str, path: Path, allowed: tuple[str, ...]) -> dict[str, str]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise MappingError(f"{path}: {where} must be a mapping")
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise MappingError(
            f"{path}: {where}: unknown key(s) {', '.join(map(str, unknown))} (expected {', '.join(allowed)})"
        )
    return {str(k): str(v) for k, v in d.items() if v is not None}


def load_mapping(path: Path | str) -> SurveyMapping:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot read the mapping: {exc}") from exc
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: expected a YAML mapping at the top level")
    source = doc.get("source")
    if not isinstance(source, str) or not source:
        raise MappingError(f"{path}: source is required (the name loads and watermarks are recorded under)")
    tz = doc.get("timezone")
    if tz is not None:
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise MappingError(f"{path}: timezone: unknown IANA zone {tz!r}") from exc
    resp = doc.get("responses")
    if not isinstance(resp, dict):
        raise MappingError(f"{path}: responses is required (the response export's columns)")
    questions = _str_map(resp.get("questions"), "responses.questions", path, QUESTIONS)
    hidden = _str_map(resp.get("hidden"), "responses.hidden", path, HIDDEN)
    if not questions:
        raise MappingError(f"{path}: responses.questions maps no question (csat, nps, ces, comment)")
    values = {}
    for name, codes in (doc.get("values") or {}).items():
        if name not in MAPPED:
            raise MappingError(f"{path}: values.{name}: not a mapped field ({', '.join(MAPPED)})")
        if not isinstance(codes, dict):
            raise MappingError(f"{path}: values.{name} must map answer codes to values")
        values[name] = {str(k): str(v) for k, v in codes.items()}
    defaults = _str_map(doc.get("defaults"), "defaults", path, HIDDEN)
    inv = doc.get("invitations")
    invitations = None
    if inv is not None:
        if not isinstance(inv, dict):
            raise MappingError(f"{path}: invitations must be a mapping")
        not_sent = inv.get("not_sent", ["", "N"])
        invitations = InvitationMapping(
            token=_req(inv, "token", "invitations", path),
            sent_at=_req(inv, "sent_at", "invitations", path),
            id_prefix=str(inv.get("id_prefix", "")),
            not_sent=tuple(str(v) for v in not_sent),
            attributes=_str_map(inv.get("attributes"), "invitations.attributes", path, HIDDEN),
        )
        if not resp.get("token"):
            raise MappingError(f"{path}: responses.token is required to join invitations to responses")
    mapping = SurveyMapping(
        path=path,
        source=source,
        timezone=str(tz) if tz is not None else None,
        response_id=_req(resp, "id", "responses", path),
        id_prefix=str(resp.get("id_prefix", "")),
        submitted_at=_req(resp, "submitted_at", "responses", path),
        started_at=resp.get("started_at"),
        token=resp.get("token"),
        columns={**questions, **hidden},
        values=values,
        defaults=defaults,
        invitations=invitations,
    )
    if invitations and invitations.id_prefix == mapping.id_prefix:
        raise MappingError(
            f"{path}: invitations.id_prefix must differ from responses.id_prefix "
            "(an unanswered invitation and a response must not share an id)"
        )
    return mapping
