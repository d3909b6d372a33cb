"""The on-demand review of one major incident (DAG ``slm_incident_review``, ``./slm incident review``).

What the DAG and the CLI share: the parameters' JSON schema, the checks against the warehouse (each refusal
names its parameter), the cut-off of a review, the dbt selection it rebuilds, its publish (table by table,
serialised with the nightly's schema swap) and the bookkeeping of reviews in ``raw.incident_reviews``.

Nothing here reads the wall clock to compute a result: a review is keyed on its conf (ticket, window,
clients) and on the data, so a rerun gives the same figures (docs/design/incident_review.md, "The DAG").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Refused is the DAGs' shared refusal (slm_platform.orchestration.dag_params); kept importable from here.
from slm_platform.orchestration.dag_params import ISO_PATTERN, Refused, check_conf

_log = logging.getLogger(__name__)

__all__ = ["ISO_PATTERN", "Refused"]

DAG_ID = "slm_incident_review"
# One slot: the nightly's dbt build and publish and the review's build and publish never overlap. Both
# rebuild the shared staging views and intermediate tables (incremental check intervals included), which
# two concurrent dbt runs would trip over; the marts themselves go to different build schemas.
POOL = "slm_marts_build"
POOL_DESCRIPTION = "one dbt build or marts publish at a time (slm_nightly, slm_incident_review)"
BUILD_SCHEMA = "marts_build_review"  # the review's own build schema (the nightly's is marts_build)
PUBLISHED_SCHEMA = "marts"
# The review rebuilds the incident marts and everything they are computed from (staging, intermediate,
# the availability and SLA marts whose figures the impact mart must equal) and the two dims the incident
# report reads, nothing else: the satisfaction, volume, data-quality and service-review marts keep the
# nightly's build.
SELECTION = ("+fct_major_incident", "+fct_major_incident_impact", "dim_clients", "dim_services")
SELECTION_ENV = "SLM_INCIDENT_REVIEW_SELECT"  # space-separated dbt selectors, replaces SELECTION
MAX_WINDOW_ENV = "SLM_INCIDENT_MAX_WINDOW_HOURS"
DEFAULT_MAX_WINDOW_HOURS = 72.0
PUBLISH_LOCK = "slm_platform.publish"  # advisory lock also taken by publish.publish_marts

TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CLIENT_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{0,31}$"

PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "ticket_id": {
        "type": "string",
        "pattern": TICKET_PATTERN,
        "title": "Major incident",
        "description": "ticket id of the major incident to review (e.g. INC0000123)",
    },
    "window_from": {
        "type": ["null", "string"],
        "pattern": ISO_PATTERN,
        "title": "Window from",
        "description": "start of the incident window, ISO-8601 with zone; empty: the ticket's opening",
    },
    "window_to": {
        "type": ["null", "string"],
        "pattern": ISO_PATTERN,
        "title": "Window to",
        "description": "end of the incident window, ISO-8601 with zone; empty: the ticket's resolution",
    },
    "clients": {
        "type": "array",
        "items": {"type": "string", "pattern": CLIENT_PATTERN},
        "uniqueItems": True,
        "title": "Clients",
        "description": "client codes whose report editions to write; empty: every affected client",
    },
}
PARAM_DEFAULTS: dict[str, Any] = {"window_from": None, "window_to": None, "clients": []}


def check_schema(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The conf checked against PARAM_SCHEMAS (as Airflow's Params do before a run exists), with defaults;
    a key the DAG does not take is refused by name (Airflow 3.3 would pass it through untyped)."""
    return check_conf(DAG_ID, conf, PARAM_SCHEMAS, PARAM_DEFAULTS, required=("ticket_id",))


def max_window_hours() -> float:
    raw = os.environ.get(MAX_WINDOW_ENV)
    return float(raw) if raw else DEFAULT_MAX_WINDOW_HOURS


def review_key(conf: Mapping[str, Any]) -> str:
    """A short stable name for a review's conf: its landing folder and quality-gate key."""
    values = {k: conf.get(k, PARAM_DEFAULTS.get(k)) for k in PARAM_SCHEMAS}
    values["clients"] = sorted(values.get("clients") or [])
    digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
    return f"{values['ticket_id']}-{digest}"


@dataclass(frozen=True)
class Plan:
    """A validated review: what to extract, rebuild and report, and at which cut-off."""

    ticket_id: str
    client_code: str
    service_code: str
    window_from: datetime
    window_to: datetime
    affected_services: list[str]
    affected_clients: list[str]
    clients: list[str]  # the report editions: the requested clients, else every affected one
    as_of: datetime  # the dbt cut-off: never before the published marts' own (see plan_review)
    published_as_of: datetime | None = None
    key: str = ""

    def to_xcom(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        for k in ("window_from", "window_to", "as_of", "published_as_of"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))


def published_as_of(conn) -> datetime | None:
    """The cut-off of the published availability mart (the nightly's data interval end), if any."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (f"{PUBLISHED_SCHEMA}.fct_availability",))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"select max(as_of) from {PUBLISHED_SCHEMA}.fct_availability")  # noqa: S608 - constant
        return cur.fetchone()[0]


def plan_review(conn, conf: Mapping[str, Any], max_hours: float | None = None) -> Plan:
    """Check the conf against the warehouse (read only); raise :class:`Refused` naming every bad parameter.

    Refused: an unknown ticket, a ticket that is not a major incident, a window that ends before it starts
    or is longer than ``max_hours`` (default: env SLM_INCIDENT_MAX_WINDOW_HOURS, 72), an unknown client.
    The window defaults to the ticket's [opened_at, resolved_at]; still open: up to the published cut-off.
    The cut-off (dbt var as_of) is the later of the window's end and the published marts' cut-off, so a
    review never moves the dashboards' figures back in time, and it uses no wall clock.
    """
    values = check_schema(conf)
    max_hours = max_window_hours() if max_hours is None else max_hours
    problems: list[tuple[str, str]] = []
    ticket_id = values["ticket_id"]
    published = published_as_of(conn)
    with conn.cursor() as cur:
        cur.execute("select to_regclass('raw.tickets') is not null")
        if not cur.fetchone()[0]:
            raise Refused([("ticket_id", f"{ticket_id} is unknown: the warehouse holds no tickets yet")])
        cur.execute(
            "select client_code, service_code, ticket_type, coalesce(is_major, false), opened_at, resolved_at"
            " from raw.tickets where ticket_id = %s",
            (ticket_id,),
        )
        row = cur.fetchone()
        requested = list(values.get("clients") or [])
        known: set[str] = set()
        if requested:
            cur.execute("select client_code from raw.clients where client_code = any(%s)", (requested,))
            known = {r[0] for r in cur.fetchall()}
        for code in requested:
            if code not in known:
                problems.append(("clients", f"{code} is not a known client"))
        if row is None:
            problems.insert(0, ("ticket_id", f"{ticket_id} is unknown (no such ticket in raw.tickets)"))
            raise Refused(problems)
        client, service, ticket_type, is_major, opened_at, resolved_at = row
        if ticket_type != "incident":
            problems.insert(0, ("ticket_id", f"{ticket_id} is a {ticket_type}, not a major incident"))
        elif not is_major:
            problems.insert(
                0, ("ticket_id", f"{ticket_id} is an incident but not a major one (is_major false)")
            )
        cur.execute(
            "select distinct service_code from raw.tickets where ticket_id = %s or parent_ticket_id = %s",
            (ticket_id, ticket_id),
        )
        services = sorted(r[0] for r in cur.fetchall())
        cur.execute("select distinct client_code from raw.services where service_code = any(%s)", (services,))
        affected_clients = sorted(r[0] for r in cur.fetchall())
    start = _when(values["window_from"]) if values["window_from"] else opened_at
    if values["window_to"]:
        end = _when(values["window_to"])
    else:
        end = resolved_at or published
    param_to = "window_to" if values["window_to"] else "window_to (the ticket's resolution)"
    if end is None:
        problems.append(("window_to", f"{ticket_id} is still open and nothing is published yet: give one"))
    elif end <= start:
        problems.append(
            (param_to, f"{end.isoformat()} is not after window_from {start.isoformat()} (window reversed)")
        )
    elif (end - start).total_seconds() > max_hours * 3600:
        hours = (end - start).total_seconds() / 3600
        problems.append(
            (
                "window_from/window_to",
                f"the window is {hours:.1f} h long, more than the maximum of {max_hours:g} h"
                f" ({MAX_WINDOW_ENV})",
            )
        )
    for code in requested:
        if code in known and code not in affected_clients:
            problems.append(
                (
                    "clients",
                    f"{code} was not affected by {ticket_id} (affected: {', '.join(affected_clients)})",
                )
            )
    if problems:
        raise Refused(problems)
    assert end is not None
    as_of = max(end, published) if published else end
    return Plan(
        ticket_id=ticket_id,
        client_code=client,
        service_code=service,
        window_from=start,
        window_to=end,
        affected_services=services,
        affected_clients=affected_clients,
        clients=sorted(requested) or affected_clients,
        as_of=as_of,
        published_as_of=published,
        key=review_key(values),
    )


# --- bookkeeping: raw.incident_reviews ------------------------------------------------------------------


def record_review(
    conn, ticket_id: str, run_id: str, conf: Mapping[str, Any], status: str, **extra: Any
) -> None:
    """Upsert the review of ``ticket_id`` (one row per incident: its latest review); commits."""
    from slm_platform.load.raw_schema import ensure_raw_schema

    ensure_raw_schema(conn)
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.incident_reviews (ticket_id, run_id, conf, status, triggered_by, as_of,"
            " report_path, requested_at, finished_at)"
            " values (%(t)s, %(r)s, %(c)s, %(s)s, %(by)s, %(as_of)s, %(report)s, now(),"
            " case when %(s)s in ('success', 'failed') then now() end)"
            " on conflict (ticket_id) do update set run_id = excluded.run_id, conf = excluded.conf,"
            " status = excluded.status, as_of = coalesce(excluded.as_of, raw.incident_reviews.as_of),"
            " report_path = coalesce(excluded.report_path, raw.incident_reviews.report_path),"
            " triggered_by = coalesce(excluded.triggered_by, raw.incident_reviews.triggered_by),"
            " finished_at = excluded.finished_at",
            {
                "t": ticket_id,
                "r": run_id,
                "c": json.dumps(dict(conf), sort_keys=True),
                "s": status,
                "by": extra.get("triggered_by"),
                "as_of": extra.get("as_of"),
                "report": extra.get("report_path"),
            },
        )
    conn.commit()


def mark_review_failed(conn, run_id: str) -> int:
    """The review recorded by this run, if it is still 'queued' or 'running', becomes 'failed'; commits.

    Keyed on the run: a run refused before it recorded anything, or a later review of the same incident,
    is left alone. Returns the number of rows changed (0 or 1)."""
    from slm_platform.load.raw_schema import ensure_raw_schema

    ensure_raw_schema(conn)
    with conn.cursor() as cur:
        cur.execute(
            "update raw.incident_reviews set status = 'failed', finished_at = now()"
            " where run_id = %s and status in ('queued', 'running')",
            (run_id,),
        )
        changed = cur.rowcount
    conn.commit()
    return changed


def claim_unreviewed(conn, batch_ids: Sequence[int], run_id_of: Callable[[str], str]) -> list[str]:
    """Major incidents resolved in these load batches that have no review yet: claimed (status 'queued')
    in raw.incident_reviews, so a later load or a concurrent run never triggers a second review; commits."""
    from slm_platform.load.raw_schema import ensure_raw_schema

    if not batch_ids:
        return []
    ensure_raw_schema(conn)
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.incident_reviews (ticket_id, run_id, conf, status, triggered_by, requested_at)"
            " select t.ticket_id, '', jsonb_build_object('ticket_id', t.ticket_id), 'queued', 'data', now()"
            " from raw.tickets t where t._batch_id = any(%s) and t.ticket_type = 'incident' and t.is_major"
            " and t.resolved_at is not null"
            " on conflict (ticket_id) do nothing returning ticket_id",
            (list(batch_ids),),
        )
        claimed = sorted(r[0] for r in cur.fetchall())
        for ticket_id in claimed:
            cur.execute(
                "update raw.incident_reviews set run_id = %s where ticket_id = %s",
                (run_id_of(ticket_id), ticket_id),
            )
    conn.commit()
    return claimed


def data_run_id(ticket_id: str) -> str:
    """The run id of the review the data triggers: one per incident (Airflow refuses a duplicate run id)."""
    return f"incident_review__{ticket_id}"


# --- build and publish ------------------------------------------------------------------------------------

BUILD_LOCK = "slm_platform.marts_build"
_held: dict[str, Any] = {}  # the connection holding the build lock in this process, by lock name


def take_build_lock(context: Any = None, dsn: str | None = None) -> None:
    """Wait for, then hold, the warehouse's build lock (a session advisory lock) until
    :func:`release_build_lock` or the end of the process.

    A pre_execute hook of the nightly's dbt build and the review's build task: the Airflow pool serialises
    them when the scheduler runs both, but `./slm nightly run` (`airflow dags test`) ignores pools.
    """
    import psycopg2

    from slm_platform.orchestration.warehouse import warehouse_dsn

    if BUILD_LOCK in _held:
        return
    conn = psycopg2.connect(dsn or warehouse_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select pg_try_advisory_lock(hashtext(%s))", (BUILD_LOCK,))
        if not cur.fetchone()[0]:
            _log.info(f"waiting for the warehouse build lock ({BUILD_LOCK}): another dbt build is running")
            cur.execute("select pg_advisory_lock(hashtext(%s))", (BUILD_LOCK,))
    _held[BUILD_LOCK] = conn


def release_build_lock(context: Any = None, result: Any = None) -> None:
    """The post_execute hook: let the next build in (a failed task's process ends, which releases it too)."""
    conn = _held.pop(BUILD_LOCK, None)
    if conn is not None:
        conn.close()  # closing the session releases its advisory locks


def selection() -> list[str]:
    raw = os.environ.get(SELECTION_ENV)
    return raw.split() if raw else list(SELECTION)


def build(dsn: str, as_of: datetime, work_dir: str, log: Callable[[str], None] | None = None) -> str:
    """``dbt build`` of the review's selection into BUILD_SCHEMA at cut-off ``as_of``; returns dbt's output
    (its summary lines to ``log``, by default this module's logger: the task's log).

    dbt writes its manifest, run results and logs under ``work_dir``, not in the project's target folder,
    which the nightly's Cosmos tasks read and write.
    """
    from slm_platform.transform import dbt_runner

    log = log or _log.info
    with _connect(dsn) as conn, conn.cursor() as cur:
        # Left over from a failed attempt: a stale mart must not be published with this review's.
        cur.execute(f"drop schema if exists {BUILD_SCHEMA} cascade")  # noqa: S608 - constant
    select = selection()
    args = ["build", "--select", *select, "--vars", json.dumps({"as_of": as_of.isoformat()})]
    # Unit tests check the models' SQL on fixed rows, not the data: the same code passed them in the nightly
    # (and in CI). The data tests, the review's gate on what it publishes, all run. Measured on the demo:
    # 30 unit tests were about a third of the selection's test time.
    args += ["--exclude-resource-type", "unit_test"]
    args += ["--target-path", f"{work_dir}/target", "--log-path", f"{work_dir}/logs"]
    log(f"dbt build --select {' '.join(select)} into {BUILD_SCHEMA}, as_of {as_of.isoformat()}")
    out = dbt_runner.dbt(args, dbt_runner.dbt_env(dsn, marts_schema=BUILD_SCHEMA))
    for line in out.splitlines():
        if " OK " in line or "ERROR" in line or "Done." in line or "WARN" in line:
            log(line)
    return out


class _connect:
    """psycopg2 connection as a context manager that commits and closes."""

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self.conn = psycopg2.connect(dsn)

    def __enter__(self):
        return self.conn

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.conn.commit()
        self.conn.close()


def publish(dsn: str, build: str = BUILD_SCHEMA, target: str = PUBLISHED_SCHEMA) -> list[str]:
    """Move every table the review built into the published schema, replacing its namesakes, in ONE
    transaction under the publish lock: readers see all of them change at once, and a nightly's schema swap
    (which takes the same lock) happens wholly before or after."""
    from psycopg2 import sql

    from slm_platform.load.raw_schema import ensure_raw_schema
    from slm_platform.settings import READER_ROLE
    from slm_platform.transform.publish import RECORD_TABLE, table_checksums

    with _connect(dsn) as conn:
        ensure_raw_schema(conn)  # raw.mart_publications (commits)
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (PUBLISH_LOCK,))
        cur.execute(
            "select table_name from information_schema.tables where table_schema = %s"
            " and table_type = 'BASE TABLE' order by 1",
            (build,),
        )
        tables = [r[0] for r in cur.fetchall()]
        if not tables:
            raise RuntimeError(f"nothing to publish: schema {build!r} is missing or empty")
        # the publish record, as the nightly's, in the same transaction: only the tables this review replaced
        cur.execute(
            f"insert into {RECORD_TABLE} (target_schema, tables, kind) values (%s, %s, 'tables')",
            (target, json.dumps(table_checksums(cur, build, tables))),
        )
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(target)))
        for name in tables:
            cur.execute(
                sql.SQL("drop table if exists {}.{}").format(sql.Identifier(target), sql.Identifier(name))
            )
            cur.execute(
                sql.SQL("alter table {}.{} set schema {}").format(
                    sql.Identifier(build), sql.Identifier(name), sql.Identifier(target)
                )
            )
        cur.execute("select 1 from pg_roles where rolname = %s", (READER_ROLE,))
        if cur.fetchone():
            cur.execute(
                sql.SQL("grant usage on schema {} to {}").format(
                    sql.Identifier(target), sql.Identifier(READER_ROLE)
                )
            )
            for name in tables:
                cur.execute(
                    sql.SQL("grant select on {}.{} to {}").format(
                        sql.Identifier(target), sql.Identifier(name), sql.Identifier(READER_ROLE)
                    )
                )
        cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(build)))
    return tables


# --- ./slm incident review: trigger the real DAG through the REST API and follow it ----------------------


class AirflowApi:
    """The stack's Airflow REST API (v2) as admin, with a bearer token from ``/auth/token``."""

    def __init__(self, url: str, username: str, password: str) -> None:
        import requests

        self.url = url.rstrip("/")
        self.http = requests.Session()
        resp = self.http.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        resp.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, attempts: int = 4) -> Any:
        """GET a JSON resource; a timed-out or refused request is retried (a busy api-server has one
        worker, and a follow loop must not die of one slow answer)."""
        import requests

        for attempt in range(attempts):
            try:
                resp = self.http.get(f"{self.url}/api/v2/{path}", timeout=60)
                break
            except (requests.Timeout, requests.ConnectionError):
                if attempt == attempts - 1:
                    raise
                time.sleep(2 * (attempt + 1))
        resp.raise_for_status()
        return resp.json()

    def trigger(self, conf: Mapping[str, Any], run_id: str | None = None):
        """POST a run of the review DAG; the raw response (4xx when Airflow's Params refuse the conf)."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if run_id:
            body["dag_run_id"] = run_id
        return self.http.post(f"{self.url}/api/v2/dags/{DAG_ID}/dagRuns", json=body, timeout=30)

    def task_states(self, run_id: str) -> dict[str, str | None]:
        page = self.get(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
        return {ti["task_id"]: ti["state"] for ti in page["task_instances"]}


def api_error(resp) -> str:
    """The one line to show for a refused request: Airflow's ``detail``."""
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # FastAPI's request validation: [{loc, msg}, ...]
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return " ".join(str(detail or resp.text).split())


def follow(
    api: AirflowApi, run_id: str, say: Callable[[str], None], timeout: float = 1800, poll: float = 3.0
) -> tuple[str, dict[str, str | None]]:
    """Wait for the run to end, printing each task as it ends; (run state, task states)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    while True:
        state = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        tasks = api.task_states(run_id)
        for task_id, task_state in tasks.items():
            done = task_state in ("success", "failed", "skipped", "upstream_failed")
            if done and seen.get(task_id) != task_state:
                say(f"    {task_state:8} {task_id}")
            seen[task_id] = task_state
        if state in ("success", "failed"):
            return state, tasks
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f} s")
        time.sleep(poll)
