"""Closed periods are recomputed from their inputs: a rebuild changes a period's attainment only when what
that period is computed from changed.

One fresh warehouse with the demo data (October-November 2026) and the catalogue, built with `dbt build`.
Each test snapshots ``marts_build.fct_sla_attainment``, changes one input (nothing; one late ticket update;
one contract amendment), rebuilds and checks which rows moved. What may move is derived from lower layers
(``fct_ticket_sla``, the catalogue), and the moved figures are recomputed here from the counts.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import yaml

from slm_platform.contracts.load import DEFAULT_CATALOGUE, load_contracts
from slm_platform.load.loader import load_drop
from slm_platform.settings import PgServer
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from tests.conftest import query_dicts, scratch_database

OCT, NOV, Q4, YEAR = date(2026, 10, 1), date(2026, 11, 1), date(2026, 10, 1), date(2026, 1, 1)
KEY = ("client_code", "service_code", "agreement_id", "objective_id", "period_type", "period_start")


@dataclass
class Warehouse:
    dsn: str
    tmp: Path
    drop: Path

    def build(self) -> None:
        # Own target/log paths: the repo's dbt_project/target (Cosmos' manifest) is not ours to rewrite.
        dbt(
            ["build", "--target-path", str(self.tmp / "target"), "--log-path", str(self.tmp / "logs")],
            dbt_env(self.dsn),
        )


@pytest.fixture(scope="module")
def wh(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    tmp = tmp_path_factory.mktemp("recompute")
    with scratch_database(pg_server) as dsn:
        generate(tmp / "drop", months=2)
        load_drop(dsn, tmp / "drop")
        load_contracts(dsn)
        w = Warehouse(dsn, tmp, tmp / "drop")
        w.build()
        yield w


def _query(dsn: str, sql: str, args: tuple = ()) -> list[dict]:
    return query_dicts(dsn, sql, args)


def _attainment(dsn: str) -> dict[tuple, dict]:
    rows = _query(dsn, "select * from marts_build.fct_sla_attainment")
    snap = {tuple(r[k] for k in KEY): r for r in rows}
    assert len(snap) == len(rows)
    return snap


def _changed(before: dict[tuple, dict], after: dict[tuple, dict]) -> set[tuple]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _pct(met: int, counted: int) -> Decimal:
    return (Decimal(100 * met) / Decimal(counted)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _cutoff(dsn: str) -> datetime:
    """The default as-of instant of the marts (latest loaded timestamp): a late change must not move it,
    or every open ticket's clock would run further and unrelated rows would change too."""
    return _query(
        dsn,
        "select greatest((select max(greatest(opened_at, first_response_at, resolved_at, closed_at, "
        "updated_at)) from raw.tickets), (select max(occurred_at) from raw.ticket_events)) as c",
    )[0]["c"]


def test_rebuild_without_input_change_is_identical(wh: Warehouse) -> None:
    before = _attainment(wh.dsn)
    periods = {(k[4], k[5]) for k in before}
    # the data really spans the periods the other tests reason about
    assert {("month", OCT), ("month", NOV), ("quarter", Q4), ("year", YEAR)} <= periods
    wh.build()
    assert _attainment(wh.dsn) == before


def test_late_ticket_update_changes_only_its_own_rows(wh: Warehouse) -> None:
    # An October incident resolved early in October within its resolution target, without reopening.
    candidates = _query(
        wh.dsn,
        """
        select s.ticket_id, s.client_code, s.service_code, s.agreement_id, s.objective_id
        from marts_build.fct_ticket_sla as s
        inner join raw.tickets as t on s.ticket_id = t.ticket_id
        where s.agreement_id like 'SLA-%%' and s.metric = 'resolution' and s.is_met
          and s.period_month = %s and t.ticket_type = 'incident'
          and s.clock_stopped_at = t.resolved_at and t.resolved_at < '2026-10-12'
          and t.first_response_at < t.resolved_at
          and coalesce(t.closed_at, t.resolved_at) < '2026-10-20' and t.updated_at < '2026-10-20'
        order by s.ticket_id
        """,
        (OCT,),
    )
    assert candidates, "the demo data has no early-October incident resolved within target"
    target = candidates[0]
    ticket = target["ticket_id"]
    objectives = {
        r["objective_id"]: r
        for r in _query(
            wh.dsn,
            "select objective_id, agreement_id, period_month from marts_build.fct_ticket_sla "
            "where ticket_id = %s and agreement_id like 'SLA-%%'",
            (ticket,),
        )
    }
    before, cutoff = _attainment(wh.dsn), _cutoff(wh.dsn)

    # The late news: the fix did not hold, the ticket was really resolved on 28 October (still October in
    # every client time zone), 16+ days after opening: far beyond any resolution target of the catalogue.
    with open(wh.drop / "tickets.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames
        row = next(r for r in reader if r["ticket_id"] == ticket)
    resolved = datetime(2026, 10, 28, 12, tzinfo=UTC)
    updated = max(
        datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00")) + timedelta(minutes=1),
        resolved + timedelta(hours=1),
    )
    row["resolved_at"] = resolved.strftime("%Y-%m-%dT%H:%M:%SZ")
    if row["closed_at"]:
        row["closed_at"] = (resolved + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    row["updated_at"] = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    late = wh.tmp / "late_ticket"
    late.mkdir()
    with open(late / "tickets.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerow(row)
    (res,) = load_drop(wh.dsn, late)
    assert (res.rows_loaded, res.rows_quarantined) == (1, 0)
    assert _cutoff(wh.dsn) == cutoff

    wh.build()
    after = _attainment(wh.dsn)
    sla = _query(
        wh.dsn,
        "select is_met, period_month from marts_build.fct_ticket_sla "
        "where ticket_id = %s and objective_id = %s",
        (ticket, target["objective_id"]),
    )
    assert sla == [{"is_met": False, "period_month": OCT}]

    allowed = {
        (target["client_code"], target["service_code"], o["agreement_id"], oid, ptype, pstart)
        for oid, o in objectives.items()
        for ptype, pstart in (("month", OCT), ("quarter", Q4), ("year", YEAR))
    }
    changed = _changed(before, after)
    print(f"late update of {ticket}: {len(changed)} of {len(after)} rows changed: {sorted(changed)}")
    assert changed <= allowed, sorted(changed - allowed)
    # the resolution objective lost exactly one met ticket in October, Q4 and 2026, nothing else moved
    for ptype, pstart in (("month", OCT), ("quarter", Q4), ("year", YEAR)):
        k = (
            target["client_code"],
            target["service_code"],
            target["agreement_id"],
            target["objective_id"],
            ptype,
            pstart,
        )
        assert k in changed
        b, a = before[k], after[k]
        assert a["tickets_counted"] == b["tickets_counted"]
        assert a["tickets_met"] == b["tickets_met"] - 1
        assert a["threshold_pct"] == b["threshold_pct"]
        assert a["attainment_pct"] == _pct(a["tickets_met"], a["tickets_counted"])
        assert a["is_met"] == (100 * a["tickets_met"] >= a["threshold_pct"] * a["tickets_counted"])
    assert len(after) == len(before)


def _amended_catalogue(
    src: Path, dst: Path, agreement: str, objective: tuple[str, str, str], threshold: float
) -> None:
    """A copy of the catalogue where ``agreement``'s open-ended version ends on 31 October and a new version
    from 1 November differs only by ``objective``'s threshold."""
    cat = yaml.safe_load(src.read_text())
    versions = [a for a in cat["agreements"] if a["id"] == agreement and a.get("valid_to") is None]
    assert len(versions) == 1 and versions[0]["valid_from"] < NOV
    current = versions[0]
    amended = copy.deepcopy(current)
    current["valid_to"] = date(2026, 10, 31)
    amended["valid_from"] = NOV
    hits = [
        o
        for o in amended["objectives"]
        if (o["metric"], o.get("ticket_type"), o.get("priority")) == objective
    ]
    assert len(hits) == 1 and hits[0]["threshold_pct"] != threshold
    hits[0]["threshold_pct"] = threshold
    cat["agreements"].insert(cat["agreements"].index(current) + 1, amended)
    dst.write_text(yaml.safe_dump(cat, sort_keys=False))


def test_contract_amendment_changes_only_later_rows_of_its_objective(wh: Warehouse) -> None:
    before = _attainment(wh.dsn)
    # the ACME objective with the most tickets in both months
    busiest = _query(
        wh.dsn,
        """
        select objective_id, metric, ticket_type, priority, sum(tickets_counted) as n
        from marts_build.fct_sla_attainment
        where agreement_id = 'SLA-ACME-2026' and period_type = 'month'
          and metric in ('response', 'resolution')
        group by objective_id, metric, ticket_type, priority
        having count(distinct period_start) = 2
        order by n desc, objective_id
        limit 1
        """,
    )[0]
    objective_id, new_threshold = busiest["objective_id"], Decimal("99.5")
    path = wh.tmp / "catalogue_amended.yaml"
    _amended_catalogue(
        DEFAULT_CATALOGUE,
        path,
        "SLA-ACME-2026",
        (busiest["metric"], busiest["ticket_type"], busiest["priority"]),
        float(new_threshold),
    )
    load_contracts(wh.dsn, path)
    wh.build()
    after = _attainment(wh.dsn)

    # Which (service, period) of the objective hold a ticket opened from 1 November (client time zone):
    # those are measured against the amended version, and a period is held to its strictest threshold.
    amended_cells = {
        (r["service_code"], ptype, pstart)
        for r in _query(
            wh.dsn,
            """
            select distinct s.service_code, s.period_month
            from marts_build.fct_ticket_sla as s
            inner join raw.clients as c on s.client_code = c.client_code
            where s.objective_id = %s and s.period_month is not null
              and (s.clock_started_at at time zone c.timezone)::date >= %s
            """,
            (objective_id, NOV),
        )
        for ptype, pstart in (("month", r["period_month"]), ("quarter", Q4), ("year", YEAR))
    }
    assert any(c[1] == "month" and c[2] == NOV for c in amended_cells)

    changed = _changed(before, after)
    assert set(after) == set(before)
    assert changed, "the amendment changed nothing"
    print(f"amendment of {objective_id}: {len(changed)} of {len(after)} rows changed: {sorted(changed)}")
    for k in changed:
        assert k[3] == objective_id, k
        assert (k[1], k[4], k[5]) in amended_cells, k
        assert not (k[4] == "month" and k[5] == OCT), k
    for k, b in before.items():
        a = after[k]
        if k[3] != objective_id:
            continue
        assert (a["tickets_counted"], a["tickets_met"], a["attainment_pct"]) == (
            b["tickets_counted"],
            b["tickets_met"],
            b["attainment_pct"],
        )
        expected = (
            max(b["threshold_pct"], new_threshold)
            if (k[1], k[4], k[5]) in amended_cells
            else b["threshold_pct"]
        )
        assert a["threshold_pct"] == expected, k
        assert a["is_met"] == (100 * a["tickets_met"] >= expected * a["tickets_counted"]), k
        if k[4] == "month" and k[5] == OCT:
            assert a == b
