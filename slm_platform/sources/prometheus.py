"""Prometheus → canonical ``checks``: one row per sample of a probe expression, through the HTTP API.

``GET /api/v1/query_range`` evaluates the configured expression (``probe_success``, ``up``, …) at every
multiple of the step (the check interval) inside the window; each returned sample becomes a check:
value 1 → ``up``, 0 → ``down``. A time where the expression has no value (target gone, Prometheus down,
series stale) returns no sample and so no row: a gap, which the marts count as unmeasured, never as up.

Series → services by configuration (``config/sources/prometheus.yaml``): the first rule whose labels all
equal the series' labels gives the service_code. A series no rule maps is not dropped: its samples are
written with an empty service_code and the series in extra columns, so the loader quarantines every one of
them (reason ``missing key: service_code``, the series in the raw record) and counts them in the batch.
A value other than 0 or 1 is written as it came and quarantined the same way (``bad status``).

The window is half-open, ``[start, end)``, and evaluation times are multiples of the step since the epoch,
so windows that touch neither overlap nor leave a gap, chunks join exactly, and a rerun of a window yields
the same keys (the load upserts them: idempotent). It is split into chunks of at most ``chunk`` and at most
11,000 points per series (Prometheus refuses more in one query). Rows stream into a gzipped canonical
``checks.csv.gz``: memory holds one chunk's answer, whatever the window.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from slm_platform.settings import REPO_ROOT
from slm_platform.sources.http_auth import Auth, connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries

BACKOFF = Backoff(base=1.0, cap=30.0)  # 1, 2, 4 ... 30 s between attempts, unless Retry-After says
RETRY_BUDGET = 300.0  # seconds one query's retries may take in all (slm_platform.sources.http_retry)
MAX_POINTS = 11_000  # per series and query: Prometheus answers 400 "exceeded maximum resolution" beyond
DEFAULT_CONFIG = REPO_ROOT / "config" / "sources" / "prometheus.yaml"
SOURCE = "prometheus"
HEADER = ("service_code", "checked_at", "status", "latency_ms", "prometheus_series", "unmapped")

Log = Callable[[str], None]


class PrometheusError(RuntimeError):
    """Prometheus could not be read (the message names the request and why)."""


class PrometheusAuthError(PrometheusError):
    """401/403: wrong or missing credentials."""


class ConfigError(ValueError):
    """The source configuration is invalid (the message names the file and the field)."""


# ---------------------------------------------------------------------------------------------------
# Authentication


def auth_from_env(env: dict[str, str] | None = None) -> Auth | None:
    """``SLM_PROMETHEUS_TOKEN`` (bearer), or ``SLM_PROMETHEUS_USER`` + ``_PASSWORD`` (basic), or none."""
    env = dict(os.environ) if env is None else env
    if env.get("SLM_PROMETHEUS_TOKEN"):
        return Auth("bearer", env["SLM_PROMETHEUS_TOKEN"])
    if env.get("SLM_PROMETHEUS_USER"):
        return Auth("basic", env.get("SLM_PROMETHEUS_PASSWORD", ""), env["SLM_PROMETHEUS_USER"])
    return None


def auth_from_connection(conn: Any) -> Auth | None:
    """From an Airflow connection: extra ``bearer_token``, else login + password, else no auth."""
    extra = connection_extra(conn)
    if extra.get("bearer_token"):
        return Auth("bearer", str(extra["bearer_token"]))
    if getattr(conn, "login", None):
        return Auth("basic", conn.password or "", conn.login)
    return None


def url_from_connection(conn: Any) -> str | None:
    """``http(s)://host:port[/path]`` from a connection's host (a full URL or a bare host), port, schema."""
    host = (getattr(conn, "host", None) or "").rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = f"{connection_extra(conn).get('scheme', 'http')}://{host}"
    port = getattr(conn, "port", None)
    scheme, rest = host.split("://", 1)
    hostpart, _, path = rest.partition("/")
    if port and ":" not in hostpart:
        hostpart = f"{hostpart}:{port}"
    return f"{scheme}://{hostpart}" + (f"/{path}" if path else "")


# ---------------------------------------------------------------------------------------------------
# Configuration

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, what: str) -> int:
    """Whole seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"`` (Prometheus-style units)."""
    m = _DURATION.match(str(value).strip())
    if not m or m.group(2) == "ms":
        raise ConfigError(f"{what}: {value!r} is not a duration in whole seconds (e.g. 60, 60s, 5m, 1h, 1d)")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"{what}: must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class ServiceRule:
    """A series belongs to ``service_code`` when every label of ``match`` has exactly that value."""

    match: tuple[tuple[str, str], ...]
    service_code: str

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match)


@dataclass(frozen=True)
class PrometheusConfig:
    expression: str
    step_seconds: int  # the check interval: one evaluation (one check row) per step
    chunk_seconds: int  # the largest window asked in one query
    rules: tuple[ServiceRule, ...]
    url: str | None = None  # the connection / environment may override it
    timeout_seconds: float = 30.0
    max_retries: int = 3
    source_file: str = "<inline>"

    @property
    def points_per_chunk(self) -> int:
        return max(1, min(MAX_POINTS, self.chunk_seconds // self.step_seconds))

    def service_for(self, labels: dict[str, str]) -> str | None:
        for rule in self.rules:
            if rule.matches(labels):
                return rule.service_code
        return None


def load_config(path: Path | str = DEFAULT_CONFIG) -> PrometheusConfig:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return config_from_dict(doc, str(path))


def config_from_dict(doc: object, source: str = "<inline>") -> PrometheusConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    known = {"url", "expression", "step", "chunk", "timeout", "retries", "services"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} (known: {sorted(known)})")
    expression = doc.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"{source}: 'expression' (a PromQL expression such as probe_success) is required")
    step = parse_duration(doc.get("step", "60s"), f"{source}: step")
    chunk = parse_duration(doc.get("chunk", "1d"), f"{source}: chunk")
    if chunk < step:
        raise ConfigError(f"{source}: chunk ({chunk} s) is shorter than one step ({step} s)")
    rules = []
    services = doc.get("services") or []
    if not isinstance(services, list):
        raise ConfigError(f"{source}: 'services' must be a list of {{match: {{label: value}}, service_code}}")
    for i, entry in enumerate(services, start=1):
        where = f"{source}: services[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"match", "service_code"}:
            raise ConfigError(f"{where}: expected exactly the keys match and service_code, got {entry!r}")
        match = entry["match"]
        if not isinstance(match, dict) or not match:
            raise ConfigError(f"{where}: 'match' must be a non-empty mapping label -> value")
        code = entry["service_code"]
        if not isinstance(code, str) or not code.strip():
            raise ConfigError(f"{where}: 'service_code' must be a non-empty string")
        rules.append(ServiceRule(tuple((str(k), str(v)) for k, v in match.items()), code.strip()))
    retries = doc.get("retries", 3)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{source}: 'retries' must be a whole number >= 0, got {retries!r}")
    return PrometheusConfig(
        expression=expression.strip(),
        step_seconds=step,
        chunk_seconds=chunk,
        rules=tuple(rules),
        url=doc.get("url") or None,
        timeout_seconds=float(parse_duration(doc.get("timeout", "30s"), f"{source}: timeout")),
        max_retries=retries,
        source_file=source,
    )


# ---------------------------------------------------------------------------------------------------
# Windows and chunks


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {ts.isoformat()} (give an offset or Z)")
    return ts.timestamp()


def plan_chunks(start: datetime, end: datetime, step: int, points_per_chunk: int) -> list[tuple[int, int]]:
    """(first, last) evaluation times, epoch seconds, of each query: every multiple of ``step`` in
    ``[start, end)``, in runs of at most ``points_per_chunk`` points. Empty when the window holds none."""
    lo, hi = _epoch(start), _epoch(end)
    first = math.ceil(lo / step) * step
    chunks = []
    while first < hi:
        n = min(points_per_chunk, math.ceil((hi - first) / step))  # points in [first, hi)
        last = first + (n - 1) * step
        chunks.append((first, last))
        first = last + step
    return chunks


# ---------------------------------------------------------------------------------------------------
# HTTP


@dataclass
class ExtractResult:
    file: Path
    start: datetime
    end: datetime
    step_seconds: int
    samples: int = 0
    rows_mapped: int = 0
    rows_unmapped: int = 0  # samples of unmapped series: quarantined by the load
    rows_bad_value: int = 0  # mapped samples whose value is neither 0 nor 1: quarantined by the load
    series: int = 0  # distinct series seen
    unmapped_series: dict[str, int] = field(default_factory=dict)  # series -> samples
    shared_services: dict[str, list[str]] = field(default_factory=dict)  # service -> its series, if > 1
    chunks: int = 0
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # cause -> count
    warnings: list[str] = field(default_factory=list)  # what Prometheus itself warned about
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "file": str(self.file),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "samples": self.samples,
            "mapped": self.rows_mapped,
            "unmapped": self.rows_unmapped,
            "bad_value": self.rows_bad_value,
            "series": self.series,
            "unmapped_series": dict(self.unmapped_series),
            "chunks": self.chunks,
            "requests": self.requests,
            "retries": dict(self.retries),
            "seconds": self.seconds,
        }


class _Api:
    def __init__(self, base_url: str, auth: Auth | None, config: PrometheusConfig, sleep, result):
        self.url = base_url.rstrip("/") + "/api/v1/query_range"
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if auth:
            self.session.headers.update(auth.headers())
        self.timeout, self.max_retries, self.sleep, self.res = (
            config.timeout_seconds,
            config.max_retries,
            sleep,
            result,
        )

    @property
    def client_timeout(self) -> float:
        return self.timeout + min(5.0, self.timeout)

    def query_range(self, query: str, first: int, last: int, step: int) -> list[dict]:
        params = {"query": query, "start": first, "end": last, "step": step, "timeout": f"{self.timeout:g}s"}
        what = f"GET {self.url} (start={first}, end={last}, step={step})"
        return get_with_retries(
            self.session,
            self.url,
            params,
            lambda resp: self._answer(resp, what),
            what=what,
            error=PrometheusError,
            # the client waits a little longer than the server-side query timeout it asked for
            timeout=self.client_timeout,
            max_retries=self.max_retries,
            backoff=BACKOFF,
            sleep=self.sleep,
            counts=self.res,
            budget=RETRY_BUDGET,
        )

    def _answer(self, resp: requests.Response, what: str) -> list[dict] | RetryLater:
        if resp.status_code in (401, 403):
            raise PrometheusAuthError(
                f"{what}: HTTP {resp.status_code}: Prometheus (or its proxy) refused the credentials; "
                f"check the connection's login/password or extra.bearer_token"
            )
        body, problem = _json_body(resp)
        if resp.status_code == 200 and body is not None and body.get("status") == "success":
            data = body.get("data") or {}
            if not isinstance(data, dict) or "result" not in data:
                return RetryLater("no_result", f"HTTP 200 without a result: {str(body)[:200]!r}")
            if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
                raise PrometheusError(f"{what}: expected a matrix result, got {data.get('resultType')!r}")
            self.res.warnings.extend(str(w) for w in body.get("warnings") or [])
            return data["result"]
        if body is not None and body.get("status") == "error":
            last_error = f"HTTP {resp.status_code}: {body.get('errorType')}: {body.get('error')}"
        else:
            last_error = f"HTTP {resp.status_code}: {problem or 'unexpected answer'}"
        code = resp.status_code
        if code == 429 or code >= 500 or (code == 200 and (body is None or body.get("status") != "error")):
            # overloaded, restarting, or a proxy's garbled or truncated answer (a 200 that is neither
            # success nor error, e.g. ``{}``): worth another try
            cause = "bad_json" if body is None else "no_result"
            cause = "429" if code == 429 else "5xx" if code >= 500 else cause
            return RetryLater(cause, last_error, _retry_after(resp.headers.get("Retry-After")))
        # 400 bad_data (the expression, the range), 422 execution error...: retrying cannot help
        raise PrometheusError(f"{what} failed: {last_error}")


def _json_body(resp: requests.Response) -> tuple[dict | None, str | None]:
    try:
        body = resp.json()
    except ValueError:
        text = resp.text[:200].replace("\n", " ")
        return None, f"answer is not JSON: {text!r}"
    return (body, None) if isinstance(body, dict) else (None, f"answer is not a JSON object: {body!r:.200}")


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(60.0, float(value.strip()))
    return None


# ---------------------------------------------------------------------------------------------------
# Extract


def series_name(labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}``, labels sorted, as Prometheus prints a series."""
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


_STATUS = {"1": "up", "0": "down"}  # how Prometheus prints 1 and 0: the common case, without float()


def _status(value: str) -> str:
    known = _STATUS.get(value)
    if known is not None:
        return known
    try:
        number = float(value)
    except ValueError:
        return value
    if number == 1:
        return "up"
    if number == 0:
        return "down"
    return value  # NaN, 0.5, ...: not a probe result; the loader quarantines it as a bad status


def _iso(ts: float, cache: dict[float, str]) -> str:
    s = cache.get(ts)
    if s is None:
        if ts == int(ts):
            s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        else:
            s = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
        cache[ts] = s
    return s


def _rows(config: PrometheusConfig, result: list[dict], res: ExtractResult, seen: dict) -> Iterator[tuple]:
    cache: dict[float, str] = {}
    for series in result:
        labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        name = series_name(labels)
        code = config.service_for(labels)
        if name not in seen:
            seen[name] = code
            res.series += 1
            if code is not None:
                res.shared_services.setdefault(code, []).append(name)
        values = series.get("values") or []
        res.samples += len(values)
        if code is None:
            res.rows_unmapped += len(values)
            res.unmapped_series[name] = res.unmapped_series.get(name, 0) + len(values)
            why = f"no rule of {config.source_file} maps this series to a service"
            for ts, value in values:
                yield ("", _iso(float(ts), cache), _status(value), "", name, why)
            continue
        for ts, value in values:
            status = _status(value)
            if status in ("up", "down"):
                res.rows_mapped += 1
                yield (code, _iso(float(ts), cache), status, "", "", "")
            else:
                res.rows_bad_value += 1
                yield (code, _iso(float(ts), cache), status, "", name, "")


def extract_checks(
    config: PrometheusConfig,
    start: datetime,
    end: datetime,
    out_dir: Path | str,
    *,
    url: str | None = None,
    auth: Auth | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Log | None = None,
) -> ExtractResult:
    """Write ``out_dir/checks.csv.gz`` with every sample of ``config.expression`` in ``[start, end)``.

    The file is written aside and moved into place only when complete: a failed extract never leaves a
    partial file for the load to pick up.
    """
    base = url or config.url
    if not base:
        raise ConfigError(
            f"no Prometheus URL: set it in {config.source_file} (url), the Airflow connection "
            f"prometheus_default (host), SLM_PROMETHEUS_URL or --url"
        )
    if _epoch(end) <= _epoch(start):
        raise ValueError(f"empty window: end {end.isoformat()} is not after start {start.isoformat()}")
    say = log or (lambda _msg: None)
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    partial = out_dir / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    target = out_dir / "checks.csv.gz"
    res = ExtractResult(file=target, start=start, end=end, step_seconds=config.step_seconds)
    api = _Api(base, auth, config, sleep, res)
    seen: dict[str, str | None] = {}
    step = config.step_seconds
    try:
        # compresslevel 1: the file is read once, soon after; CPU matters more than its size
        with gzip.open(partial / target.name, "wt", encoding="utf-8", newline="", compresslevel=1) as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(HEADER)
            for first, last in plan_chunks(start, end, step, config.points_per_chunk):
                result = api.query_range(config.expression, first, last, step)
                res.chunks += 1
                writer.writerows(_rows(config, result, res, seen))
                del result  # else the next answer is parsed while this one is still held: 2 chunks' peak
        (partial / target.name).replace(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    res.shared_services = {k: v for k, v in res.shared_services.items() if len(v) > 1}
    res.seconds = round(time.monotonic() - t0, 3)
    for name, n in sorted(res.unmapped_series.items()):
        say(f"WARNING: {n} sample(s) of unmapped series {name} quarantined (map it in {config.source_file})")
    for code, names in sorted(res.shared_services.items()):
        say(
            f"WARNING: {len(names)} series map to {code} ({', '.join(names)}): the load keeps one check per "
            f"time and quarantines the others as duplicates; aggregate them in the expression instead"
        )
    for w in res.warnings:
        say(f"Prometheus warning: {w}")
    return res


# ---------------------------------------------------------------------------------------------------
# Extract + load


def watermark(dsn: str, source: str = SOURCE) -> datetime | None:
    """The latest checked_at loaded from ``source`` (raw.watermarks), or None before the first load."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('raw.watermarks') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute(
                "select high_water from raw.watermarks where source = %s and entity = 'checks'", (source,)
            )
            row = cur.fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def catch_up_window(
    interval_start: datetime,
    interval_end: datetime,
    high_water: datetime | None,
    step_seconds: int,
    max_catch_up_seconds: int,
) -> tuple[datetime, datetime]:
    """The window a run extracts: its data interval, reaching back to just after the watermark when earlier
    runs left a hole (scheduler down, runs skipped), at most ``max_catch_up_seconds`` back (retention).

    A rerun of an interval finds the watermark at or past it and extracts exactly the interval again.
    """
    start = interval_start
    if high_water is not None:
        resume = datetime.fromtimestamp(
            (math.floor(high_water.timestamp() / step_seconds) + 1) * step_seconds, UTC
        )
        floor = datetime.fromtimestamp(interval_start.timestamp() - max_catch_up_seconds, UTC)
        if resume < interval_start:
            start = max(resume, floor)
    return start, interval_end


def landing_dir(landing_root: Path, start: datetime, end: datetime) -> Path:
    """One folder per window, stable across reruns of that window."""
    fmt = "%Y-%m-%dT%H%M%SZ"
    return landing_root / f"{start.astimezone(UTC).strftime(fmt)}--{end.astimezone(UTC).strftime(fmt)}"
