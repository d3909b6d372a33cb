"""The "Data quality" dashboard (managers only): what the loads did and what they refused.

The demo data loads without a refused row, so the module first gives the demo warehouse something to show,
the way an operator would: a tickets file whose every row is refused (two kinds of reason, three rows) and a
tickets file the loader cannot take at all (a failed batch). Neither changes raw.tickets. It then rebuilds the
marts as the nightly does (`dbt build` into marts_build at the run's cut-off, then the publish swap).

Checked: the published marts equal a Python grouping of raw.load_batches / raw.quarantine (and the reason
kinds equal `./slm quarantine list`'s); every chart's figures, read through Superset's chart-data API as admin
and
as the manager, equal SQL on the published marts; clients are refused the dashboard and its charts' data,
also through a client dashboard's context (DASHBOARD_RBAC); no raw record reaches a dataset.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg2
import pytest

from slm_platform.dashboards import provision as superset_provision
from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    CLIENT_DATASETS,
    MANAGER_ONLY_DASHBOARDS,
    MANAGER_ROLE,
    by_uuid,
    check_audiences,
)
from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.load.loader import LoadError, load_file
from slm_platform.load.report import quarantine_summary
from slm_platform.transform.dbt_runner import dbt, dbt_env
from slm_platform.transform.publish import publish_marts
from tests.superset_helpers import (
    CHARTS,
    DASHBOARDS,
    DATASET_OF,
    DATASETS,
    assert_clients_refused,
    assert_saved_query_contexts,
    bundle_with_chart_on,
    chart_data,
    chart_ids_of,
    charts_of,
    login,
)

QUALITY = DASHBOARDS["data_quality"]
QUALITY_CHARTS = charts_of(QUALITY)
SOURCE = "quality_test"
HEADER = (
    "ticket_id,client_code,service_code,ticket_type,priority,opened_at,first_response_at,resolved_at,"
    "closed_at,status,assignment_group,is_major,parent_ticket_id,category,updated_at"
)
BAD_ROWS = [  # every row refused: two bad priorities (one kind of reason), one bad timestamp
    "QTEST0001,ACME,ACME-WEB,incident,P9,2026-10-14T15:12:00+02:00,,,,new,ServiceDesk,false,,network,"
    "2026-10-14T15:12:00+02:00",
    "QTEST0002,ACME,ACME-WEB,incident,P0,2026-10-14T15:12:00+02:00,,,,new,ServiceDesk,false,,network,"
    "2026-10-14T15:12:00+02:00",
    "QTEST0003,ACME,ACME-WEB,incident,P2,yesterday,,,,new,ServiceDesk,false,,network,2026-10-14T15:12:00+02:00",
]


def _kind(reason: str) -> str:
    """The kind of a reason, written apart from REASON_KIND_SQL: every quoted value becomes '…'."""
    return re.sub(r"'[^']*'", "'…'", reason)


def _half_up(value: Decimal, places: str) -> float:
    return float(value.quantize(Decimal(places), ROUND_HALF_UP))


def _num(value: object, places: int = 2) -> object:
    return None if value is None else round(float(value), places)  # type: ignore[arg-type]


def _query(conn, sql: str, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


# ---------------------------------------------------------------- no stack needed


def test_every_chart_has_a_query_context() -> None:
    assert set(QUALITY_CHARTS) == {
        "quality_by_source",
        "quality_rows_per_day",
        "quality_quarantine_by_reason",
        "quality_last_batches",
    }
    assert_saved_query_contexts(QUALITY_CHARTS)


def test_audiences_and_no_raw_record() -> None:
    check_audiences(ASSETS_DIR)
    used = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in QUALITY_CHARTS}
    assert used == {"fct_load_batch", "fct_quarantine_reason"} and not used & set(CLIENT_DATASETS)
    for name in used:
        columns = {c["column_name"] for c in DATASETS[name]["columns"]}
        assert "client_code" not in columns and "raw_record" not in columns, name
    assert QUALITY["slug"] in MANAGER_ONLY_DASHBOARDS
    uuids = [str(d["uuid"]) for d in (*DATASETS.values(), *CHARTS.values(), *DASHBOARDS.values())]
    assert len(uuids) == len(set(uuids))


def test_check_audiences_refuses_the_quality_data_on_a_client_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A quality chart put on the clients' Ticket volume dashboard.
    assets = bundle_with_chart_on(tmp_path, "ticket_volume", "quality_quarantine_by_reason")
    with pytest.raises(ValueError, match="manager-only"):
        check_audiences(assets)
    # The dashboard itself opened to clients.
    others = tuple(s for s in MANAGER_ONLY_DASHBOARDS if s != QUALITY["slug"])
    monkeypatch.setattr(superset_provision, "MANAGER_ONLY_DASHBOARDS", others)
    with pytest.raises(ValueError, match="'data-quality' is open to clients"):
        check_audiences(ASSETS_DIR)


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def refused(demo_stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Load a refused file and a failed one into the demo warehouse, rebuild and publish the marts."""
    tmp = tmp_path_factory.mktemp("quality")
    dsn = demo_stack.warehouse_dsn
    bad = tmp / "tickets_refused.csv"
    bad.write_text(HEADER + "\n" + "\n".join(BAD_ROWS) + "\n")
    result = load_file(dsn, bad, "tickets", source=SOURCE)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 0, 3)
    headless = tmp / "tickets_without_priority.csv"
    headless.write_text(HEADER.replace(",priority", "") + "\n")
    with pytest.raises(LoadError, match="priority"):
        load_file(dsn, headless, "tickets", source=SOURCE)
    conn = psycopg2.connect(dsn)
    try:
        ((failed,),) = _query(conn, "select max(batch_id) from raw.load_batches where status = 'failed'")
        ((as_of,),) = _query(conn, "select max(as_of) from marts.fct_availability")
    finally:
        conn.close()
    # As the nightly: one dbt build into marts_build at the same cut-off, then the swap.
    vars_ = json.dumps({"as_of": as_of.isoformat()})
    dbt(
        ["build", "--vars", vars_, "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")],
        dbt_env(dsn),
    )
    assert "fct_load_batch" in publish_marts(dsn)
    return {"refused": result.batch_id, "failed": int(failed)}


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient, refused) -> dict[str, int]:
    return chart_ids_of(admin, QUALITY_CHARTS)


def test_marts_equal_the_raw_records(warehouse, refused) -> None:
    raw_batches = _query(
        warehouse,
        "select batch_id, source, entity, file, started_at, finished_at, status, rows_read, rows_loaded,"
        " rows_unchanged, rows_quarantined, error from raw.load_batches where status <> 'running'",
    )
    raw_rows = _query(
        warehouse, "select quarantine_id, batch_id, entity, location, reason from raw.quarantine order by 1"
    )
    in_quarantine: dict[int, int] = defaultdict(int)
    kinds: dict[tuple, list] = {}
    for _, batch, entity, location, reason in raw_rows:  # in quarantine_id order: the first seen stays
        in_quarantine[batch] += 1
        kinds.setdefault((batch, entity, _kind(reason)), [0, location])[0] += 1
    expected = {}
    for (
        b,
        source,
        entity,
        file,
        started,
        finished,
        status,
        read,
        loaded,
        unchanged,
        quarantined,
        error,
    ) in raw_batches:
        reconciled = None
        if status == "ok":
            reconciled = read == loaded + unchanged + quarantined and quarantined == in_quarantine[b]
        pct = None if not read else _half_up(Decimal(100 * quarantined) / read, "0.01")
        seconds = _half_up(Decimal((finished - started) // timedelta(microseconds=1)) / 10**6, "0.001")
        expected[b] = (
            source, entity, file, started, started.astimezone(UTC).date(), status, read, loaded, unchanged,
            quarantined, in_quarantine[b], pct, seconds, reconciled, error,
        )  # fmt: skip
    mart = {
        r[0]: (*r[1:11], r[11], _num(r[12]), _num(r[13], 3), r[14], r[15])
        for r in _query(
            warehouse,
            "select batch_id, source, entity, file_name, started_at, load_day, status, rows_read,"
            " rows_loaded, rows_unchanged, rows_quarantined, rows_in_quarantine, quarantined_pct, seconds,"
            " is_reconciled,"
            " error from marts.fct_load_batch",
        )
    }
    assert mart.keys() == expected.keys()
    for b, row in mart.items():
        diff = [(i, m, e) for i, (m, e) in enumerate(zip(row, expected[b], strict=True)) if m != e]
        assert not diff, (b, diff)
    assert mart[refused["refused"]][9:12] == (3, 3, 100.0) and mart[refused["refused"]][13] is True
    assert (
        mart[refused["failed"]][5] == "failed"
        and "lacks required column(s) priority" in mart[refused["failed"]][14]
    )
    assert all(row[13] for row in mart.values() if row[5] == "ok")  # every ok batch reconciles
    reasons = {
        (b, e, k): [n, loc]
        for b, e, k, n, loc in _query(
            warehouse,
            "select batch_id, entity, reason_kind, quarantined_rows, first_location"
            " from marts.fct_quarantine_reason",
        )
    }
    assert reasons == kinds
    assert {k for (b, _, k) in reasons if b == refused["refused"]} == {
        "bad priority: '…' (expected one of P1, P2, P3, P4)",
        "bad timestamp in opened_at: '…'",
    }
    assert reasons[(refused["refused"], "tickets", "bad priority: '…' (expected one of P1, P2, P3, P4)")] == [
        2,
        "tickets_refused.csv:2",
    ]
    ((columns,),) = _query(
        warehouse,
        "select array_agg(column_name::text) from information_schema.columns where table_schema = 'marts'"
        " and table_name in ('fct_load_batch', 'fct_quarantine_reason')",
    )
    assert "raw_record" not in columns


def test_reason_kinds_are_the_load_reports(warehouse, refused) -> None:
    """The mart's kinds, summed over batches, are what `./slm quarantine list` prints."""
    grouped: dict[tuple, list] = {}
    for _batch, entity, kind, rows, first in _query(
        warehouse,
        "select batch_id, entity, reason_kind, quarantined_rows, first_location"
        " from marts.fct_quarantine_reason order by batch_id",
    ):
        g = grouped.setdefault((entity, kind), [0, 0, first])
        g[0] += rows
        g[1] += 1
    report = {
        (r.entity, r.kind): [r.rows, r.batches, r.first_location] for r in quarantine_summary(warehouse)
    }
    assert report == grouped and report


def _epoch_day(value: object) -> str:
    if isinstance(value, str):
        return value[:10]
    return datetime.fromtimestamp(value / 1000, UTC).date().isoformat()  # type: ignore[operator]


def _by_source(result: dict) -> dict:
    metrics = CHARTS["quality_by_source"]["params"]["metrics"]
    return {(r["source"], r["entity"]): tuple(_num(r[m]) for m in metrics) for r in result["data"]}


def _by_source_sql(conn) -> dict:
    rows = _query(
        conn,
        "select source, entity, count(*), count(*) filter (where status = 'failed'),"
        " count(*) filter (where not is_reconciled), sum(rows_read), sum(rows_loaded), sum(rows_unchanged),"
        " sum(rows_quarantined), round(100.0 * sum(rows_quarantined) / nullif(sum(rows_read), 0), 2)"
        " from marts.fct_load_batch group by 1, 2",
    )
    return {(r[0], r[1]): tuple(_num(v) for v in r[2:]) for r in rows}


def _per_day(result: dict) -> dict:
    out = {}
    for row in result["data"]:
        day = _epoch_day(row["load_day"])
        for key, value in row.items():
            if key != "load_day" and value is not None:
                metric, entity = key.split(", ", 1)
                out[(day, entity, metric)] = _num(value)
    return out


def _per_day_sql(conn) -> dict:
    out = {}
    for day, entity, loaded, quarantined in _query(
        conn,
        "select load_day::text, entity, sum(rows_loaded), sum(rows_quarantined) from marts.fct_load_batch"
        " group by 1, 2",
    ):
        for metric, value in (("loaded", loaded), ("quarantined", quarantined)):
            if value is not None:
                out[(day, entity, metric)] = _num(value)
    return out


def _reasons(result: dict) -> list[tuple]:
    return [
        (r["entity"], r["reason_kind"], int(r["rows_quarantined"]), int(r["batches"]), r["first_seen_at"])
        for r in result["data"]
    ]


def _reasons_sql(conn) -> list[tuple]:
    return _query(
        conn,
        "select entity, reason_kind, sum(quarantined_rows)::int, count(distinct batch_id)::int,"
        " (array_agg(first_location order by batch_id))[1] from marts.fct_quarantine_reason group by 1, 2",
    )


def _last(result: dict) -> list[tuple]:
    return [
        (
            r["batch_id"],
            r["status"],
            r["rows_read"],
            r["rows_quarantined"],
            _num(r["quarantined_pct"]),
            r["error"],
        )
        for r in result["data"]
    ]


def _last_sql(conn) -> list[tuple]:
    rows = _query(
        conn,
        "select batch_id, status, rows_read, rows_quarantined, quarantined_pct, error"
        " from marts.fct_load_batch order by batch_id desc limit 100",
    )
    return [(*r[:4], _num(r[4]), r[5]) for r in rows]


def _check_charts(api: SupersetClient, conn, chart_ids: dict[str, int], refused: dict[str, int]) -> None:
    by_source = _by_source(chart_data(api, chart_ids["quality_by_source"]))
    assert by_source == _by_source_sql(conn)
    assert by_source[(SOURCE, "tickets")][:2] == (2, 1)  # the refused and the failed batch
    per_day = _per_day(chart_data(api, chart_ids["quality_rows_per_day"]))
    assert per_day == _per_day_sql(conn)
    assert any(m == "quarantined" and v for (_, _, m), v in per_day.items())
    reasons = _reasons(chart_data(api, chart_ids["quality_quarantine_by_reason"]))
    assert sorted(reasons) == sorted(_reasons_sql(conn)) and len(reasons) >= 2
    counts = [r[2] for r in reasons]
    assert counts == sorted(counts, reverse=True)  # most frequent first
    last = _last(chart_data(api, chart_ids["quality_last_batches"]))
    assert last == _last_sql(conn)
    assert {refused["refused"], refused["failed"]} <= {r[0] for r in last}
    assert any(r[1] == "failed" and r[5] for r in last)


def test_every_chart_matches_sql_for_admin(admin, warehouse, chart_ids, refused) -> None:
    _check_charts(admin, warehouse, chart_ids, refused)


def test_manager_sees_the_dashboard_and_its_figures(demo_stack, admin, warehouse, chart_ids, refused) -> None:
    api = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    dash_id = by_uuid(admin, "dashboard", QUALITY["uuid"])["id"]
    assert api.raw("GET", f"/api/v1/dashboard/{dash_id}").ok
    in_dashboard = {c["id"] for c in api.get(f"/api/v1/dashboard/{dash_id}/charts")["result"]}
    assert in_dashboard == set(chart_ids.values())
    _check_charts(api, warehouse, chart_ids, refused)


def test_clients_are_refused_the_dashboard_and_its_data(demo_stack, admin, chart_ids) -> None:
    dash_id = by_uuid(admin, "dashboard", QUALITY["uuid"])["id"]
    volume_id = by_uuid(admin, "dashboard", DASHBOARDS["ticket_volume"]["uuid"])["id"]
    charts = {key: chart_ids[key] for key in QUALITY_CHARTS}
    assert_clients_refused(demo_stack, admin, dash_id, charts, open_id=volume_id)


def test_dashboard_roles_and_rls(demo_stack, admin) -> None:
    detail = admin.get(f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', QUALITY['uuid'])['id']}")["result"]
    assert {r["name"] for r in detail["roles"]} == {MANAGER_ROLE}
    assert detail["dashboard_title"] == "Data quality"
    ids = {
        int(by_uuid(admin, "dataset", DATASETS[t]["uuid"])["id"])
        for t in ("fct_load_batch", "fct_quarantine_reason")
    }
    for rule in admin.list_all("/api/v1/rowlevelsecurity/", order_column=None):
        assert not ids & {int(t["id"]) for t in rule["tables"]}, rule["name"]
