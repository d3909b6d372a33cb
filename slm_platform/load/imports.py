"""A source's conversion followed by its load, for the callers that do both in one step (the CLI's import
commands, the Prometheus DAG's window, the tools): the sources only write drops (import direction)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from slm_platform.load.loader import load_drop
from slm_platform.sources import prometheus as prom
from slm_platform.sources import statuspage
from slm_platform.sources.http_auth import Auth
from slm_platform.sources.surveys import export as survey_export
from slm_platform.sources.surveys.mapping import SurveyMapping


def prometheus_window(
    dsn: str,
    config: prom.PrometheusConfig,
    start: datetime,
    end: datetime,
    landing_root: Path,
    *,
    url: str | None = None,
    auth: Auth | None = None,
    source: str = prom.SOURCE,
    sleep: Callable[[float], None] = time.sleep,
    log: prom.Log | None = None,
):
    """Extract ``[start, end)`` into its landing folder, then load it (COPY, quarantine, watermark)."""
    out = prom.landing_dir(landing_root, start, end)
    res = prom.extract_checks(config, start, end, out, url=url, auth=auth, sleep=sleep, log=log)
    batches = load_drop(dsn, out, source=source, log=log)
    return res, batches


def statuspage_file(
    dsn: str,
    csv_path: Path | str,
    out_dir: Path | str,
    mapping: statuspage.StatusPageMapping | None = None,
    source: str = statuspage.SOURCE,
    log=None,
):
    """Convert, then load the drop (COPY, validation, quarantine, watermark). Returns (result, batches)."""
    res = statuspage.convert(csv_path, mapping or statuspage.load_mapping(), out_dir)
    return res, load_drop(dsn, Path(out_dir), source=source, log=log)


def survey_export_file(
    dsn: str,
    responses: Path | str,
    mapping: SurveyMapping,
    invitations: Path | str | None = None,
    log=None,
) -> survey_export.ConvertResult:
    """Convert the export into a private temporary drop and load it (source = the mapping's source)."""
    with tempfile.TemporaryDirectory(prefix="slm-survey-export-") as tmp:
        result = survey_export.convert(responses, mapping, tmp, invitations)
        result.load = load_drop(dsn, Path(tmp), source=mapping.source, log=log)
        result.out_file = None  # removed with the temporary drop
    return result


def survey_api_window(
    dsn: str,
    mapping: SurveyMapping,
    since: datetime | None,
    until: datetime,
    landing: Path | str,
    *,
    url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    auth: Auth | None = None,
    log=None,
    **kw,
):
    """Pull a survey tool's responses of ``(since, until]`` by API (the mapping's ``api.tool``) into
    ``landing`` (``surveys.csv``; the pulled records in ``landing.api``), then load the drop (source = the
    mapping's source; upserts on response_id, quarantine, watermark). Returns the ApiExtractResult with
    ``load`` set."""
    landing = Path(landing)
    res = extract_survey_api(
        mapping, since, until, landing, url=url, user=user, password=password, auth=auth, **kw
    )
    res.load = load_drop(dsn, landing, source=mapping.source, log=log)
    return res


def extract_survey_api(
    mapping: SurveyMapping,
    since: datetime | None,
    until: datetime,
    landing: Path | str,
    *,
    url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    auth: Auth | None = None,
    **kw,
):
    """The extract half of :func:`survey_api_window` (the DAG loads in a task of its own)."""
    from slm_platform.sources.surveys import api, limesurvey, typeform

    landing = Path(landing)
    settings = api.api_settings(mapping)
    if kw.get("page_size") is not None:  # an override of the mapping's api.page_size
        settings = replace(settings, page_size=int(kw.pop("page_size")))
    kw.pop("page_size", None)
    staging = landing.with_name(landing.name + ".api")
    if settings.tool == "limesurvey":
        target = url or settings.url
        if not target:
            raise api.SurveyApiError(
                f"{mapping.path}: no RemoteControl URL (api.url or the connection's host)"
            )
        return limesurvey.extract_responses(
            target, user or "", password or "", mapping, settings, since, until, landing, staging, **kw
        )
    if auth is None:
        raise api.SurveyApiAuthError("Typeform needs a token (connection slm_typeform or SLM_TYPEFORM_TOKEN)")
    return typeform.extract_responses(auth, mapping, settings, since, until, landing, staging, url=url, **kw)
