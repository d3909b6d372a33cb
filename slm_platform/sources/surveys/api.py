"""What the survey-tool API connectors (LimeSurvey RemoteControl 2, Typeform Responses API) share.

A connector pulls the responses of one window ``(since, until]`` (and, for LimeSurvey, the survey's
participants), writes them as flat JSON records into a *staging* folder, and converts them with the export
importer's converter (:func:`slm_platform.sources.surveys.export.convert`) and the same mapping file: one
mapping implementation, whether the responses came from a file or from the API. The result is a canonical
drop (``surveys.csv``) that the loader loads (sources never load: ``slm_platform.load.imports``).

The mapping file is the export importer's, plus an ``api`` section (ignored by the export importer)::

    api:
      tool: limesurvey          # or typeform
      survey_id: 482915         # LimeSurvey; Typeform: form_id: aBcDeF
      url: https://surveys.example.com/index.php/admin/remotecontrol   # optional (else the connection's)
      page_size: 500

Keys: a response that carries an invitation token is keyed by its invitation (``invitations.id_prefix`` +
token), not by its response id, so that the invitation loaded unanswered in an earlier window and its answer
loaded later are ONE row (the loader upserts it): the response rate never counts an invitation twice.
Responses without a token (anonymous links, Typeform) keep ``id_prefix`` + response id.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from slm_platform.sources.surveys import export
from slm_platform.sources.surveys.mapping import MappingError, SurveyMapping

TOOLS = ("limesurvey", "typeform")
SYNTHETIC_ID = "_slm_response_id"
SYNTHETIC_TOKEN = "_slm_invitation_key"


class SurveyApiError(RuntimeError):
    """The survey tool could not be read (the message names the request and why)."""


class SurveyApiAuthError(SurveyApiError):
    """Credentials refused (HTTP 401/403, LimeSurvey 'Invalid user name or password', 'No permission')."""


@dataclass(frozen=True)
class ApiSettings:
    tool: str
    survey_id: str  # LimeSurvey survey id or Typeform form id
    url: str | None = None
    page_size: int = 500
    include_partial: bool = False  # Typeform: also started/partial responses (invitations without answer)


def api_settings(mapping: SurveyMapping) -> ApiSettings:
    """The mapping file's ``api`` section (the export importer ignores it)."""
    try:
        doc = yaml.safe_load(mapping.path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{mapping.path}: cannot read the mapping: {exc}") from exc
    api = doc.get("api")
    if not isinstance(api, dict):
        raise MappingError(f"{mapping.path}: api is required to pull by API (tool, survey_id or form_id)")
    tool = api.get("tool")
    if tool not in TOOLS:
        raise MappingError(f"{mapping.path}: api.tool must be one of {', '.join(TOOLS)} (got {tool!r})")
    ident = api.get("survey_id" if tool == "limesurvey" else "form_id")
    if ident in (None, ""):
        key = "survey_id" if tool == "limesurvey" else "form_id"
        raise MappingError(f"{mapping.path}: api.{key} is required for {tool}")
    page_size = int(api.get("page_size", 500))
    if page_size < 1:
        raise MappingError(f"{mapping.path}: api.page_size must be >= 1")
    return ApiSettings(tool, str(ident), api.get("url"), page_size, bool(api.get("include_partial", False)))


@dataclass
class ApiExtractResult:
    tool: str
    source: str
    out_dir: Path
    since: datetime | None
    until: datetime
    watermark: datetime  # the next run's ``since``
    responses_listed: int = 0  # every response the tool holds (LimeSurvey's id listing) or returned
    responses_in_window: int = 0  # changed in (since, until]: written
    responses_outside_window: int = 0  # returned by the tool but outside the window (ties, late arrivals)
    invitations_read: int = 0
    invitations_written: int = 0  # sent, not completed, no response anywhere: unanswered
    malformed: list[str] = field(default_factory=list)  # item -> why (the loader quarantines the row)
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    session_renewals: int = 0
    seconds: float = 0.0
    convert: export.ConvertResult | None = None
    load: list = field(default_factory=list)  # loader BatchResults (set by slm_platform.load.imports)

    @property
    def rows_written(self) -> int:
        return self.convert.rows_written if self.convert else 0

    def summary(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "source": self.source,
            "landing": str(self.out_dir),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "responses_listed": self.responses_listed,
            "responses_in_window": self.responses_in_window,
            "invitations_written": self.invitations_written,
            "rows_written": self.rows_written,
            "malformed": len(self.malformed),
            "requests": self.requests,
            "retries": self.retries,
            "seconds": self.seconds,
        }


class PostSession:
    """A ``requests.Session`` whose ``get(url, params, timeout)`` POSTs ``params`` as a JSON body: lets the
    JSON-RPC client reuse :func:`slm_platform.sources.http_retry.get_with_retries` (one retry loop)."""

    def __init__(self, session: Any):
        self.session = session

    def get(self, url: str, params: Any = None, timeout: float | None = None):
        return self.session.post(url, json=params, timeout=timeout)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def write_and_convert(
    mapping: SurveyMapping,
    responses: list[dict[str, Any]],
    invitations: list[dict[str, Any]] | None,
    out_dir: Path,
    staging: Path,
    result: ApiExtractResult,
) -> None:
    """Stage the flat records as JSON, convert them with the mapping into ``out_dir/surveys.csv``.

    Every record gets every mapped column (missing = empty), so that one malformed record cannot make the
    converter refuse the whole window; a malformed record becomes a row the loader quarantines with its
    reason (missing key, bad value) and the staging file:item it came from.
    """
    m = mapping
    inv = m.invitations
    keyed = inv is not None and bool(m.token)
    needed = [m.response_id, m.submitted_at, *m.columns.values(), *(c for c in (m.started_at, m.token) if c)]
    rows = []
    for rec in responses:
        row = {c: "" for c in needed}
        row.update({k: _cell(v) for k, v in rec.items()})
        rid, token = row.get(m.response_id, "").strip(), (row.get(m.token, "").strip() if m.token else "")
        row[SYNTHETIC_ID] = (
            f"{inv.id_prefix}{token}" if keyed and token else (f"{m.id_prefix}{rid}" if rid else "")
        )
        row[SYNTHETIC_TOKEN] = f"{inv.id_prefix}{token}" if keyed and token else ""
        rows.append(row)
    staging.mkdir(parents=True, exist_ok=True)
    resp_file = staging / f"{m.source}_responses.json"
    resp_file.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    conv_mapping = replace(m, response_id=SYNTHETIC_ID, id_prefix="")
    inv_file = None
    if keyed and invitations is not None:
        assert inv is not None
        inv_needed = [inv.token, inv.sent_at, *inv.attributes.values()]
        inv_rows = []
        for rec in invitations:
            row = {c: "" for c in inv_needed}
            row.update({k: _cell(v) for k, v in rec.items()})
            token = row.get(inv.token, "").strip()
            row[SYNTHETIC_TOKEN] = f"{inv.id_prefix}{token}" if token else ""
            inv_rows.append(row)
        inv_file = staging / f"{m.source}_invitations.json"
        inv_file.write_text(json.dumps(inv_rows, ensure_ascii=False), encoding="utf-8")
        conv_mapping = replace(
            conv_mapping, token=SYNTHETIC_TOKEN, invitations=replace(inv, token=SYNTHETIC_TOKEN, id_prefix="")
        )
    elif keyed:
        conv_mapping = replace(conv_mapping, token=SYNTHETIC_TOKEN, invitations=None)
    partial = out_dir / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        result.convert = export.convert(resp_file, conv_mapping, partial, inv_file)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in partial.iterdir():
            f.replace(out_dir / f.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    result.invitations_written = result.convert.invitations_without_response
