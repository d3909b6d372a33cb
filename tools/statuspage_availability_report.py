"""Monthly availability of the busiest status-page component under the sample 99.9 % objective.

Run from the repository root with the Airflow environment, against any PostgreSQL server:

    .venvs/airflow/bin/python tools/statuspage_availability_report.py \
        --server-dsn postgresql://USER:PASSWORD@HOST:PORT/postgres \
        [--as-of 2026-08-21T00:00Z] [--write-report] [--keep-database]

It creates a scratch database on the server, imports ``/work/shared/data/statuspage_downtime_windows.csv``
with the sample mapping (``config/sources/statuspage_github.yaml``), loads
``contracts/statuspage_sample.yaml`` (availability 99.9 % per UTC month, 24x7, ``measured_by:
reported_outages``), runs the availability dbt models with ``as_of``, and prints per month for the
component with the most windows (GH-ACTIONS): agreed, maintenance and downtime minutes, availability, met,
error budget remaining, then months met / total.
``--write-report`` writes the table into ``docs/statuspage_availability_report.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slm_platform.contracts.load import load_contracts  # noqa: E402
from slm_platform.load.imports import statuspage_file  # noqa: E402
from slm_platform.settings import shared_data_file  # noqa: E402
from slm_platform.sources.statuspage import load_mapping  # noqa: E402
from slm_platform.transform.dbt_runner import dbt, dbt_env  # noqa: E402

HISTORY = shared_data_file("statuspage_downtime_windows.csv")
CONTRACT = REPO / "contracts" / "statuspage_sample.yaml"
REPORT = REPO / "docs" / "statuspage_availability_report.md"
AS_OF = "2026-08-21T00:00:00Z"
SELECT = ["--select", "+fct_availability"]
COLUMNS = (
    "period_start, agreed_minutes, maintenance_minutes, downtime_minutes, unmeasured_minutes, coverage_pct,"
    " availability_pct, target_pct, is_met, error_budget_minutes, error_budget_remaining_minutes,"
    " is_period_complete"
)


def busiest_service(dsn: str) -> str:
    """The service with the most imported windows (outages + maintenance)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select service_code, count(*) from (select service_code from raw.outages"
            " union all select service_code from raw.maintenance) as w group by 1 order by 2 desc, 1 limit 1"
        )
        return cur.fetchone()[0]


def build(dsn: str, work: Path, as_of: str) -> None:
    """Import the history, load the sample contract and build the availability marts in ``dsn``."""
    statuspage_file(dsn, HISTORY, work / "drop", load_mapping())
    load_contracts(dsn, CONTRACT)
    dbt(
        ["build", *SELECT, "--indirect-selection", "buildable", "--vars", f"{{as_of: '{as_of}'}}",
         "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        dbt_env(dsn),
    )


def monthly_rows(dsn: str, service: str) -> list[dict]:
    with psycopg2.connect(dsn) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"select {COLUMNS} from marts_build.fct_availability"
            " where service_code = %s and period_type = 'month' order by period_start",
            (service,),
        )
        return [dict(r) for r in cur.fetchall()]


def run(server_dsn: str, as_of: str = AS_OF, keep: bool = False) -> tuple[str, list[dict]]:
    """Build everything in a scratch database on the server; returns (busiest service, its month rows)."""
    name = f"statuspage_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    dsn = server_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory(prefix="statuspage-report-") as tmp:
            build(dsn, Path(tmp), as_of)
        service = busiest_service(dsn)
        return service, monthly_rows(dsn, service)
    finally:
        if not keep:
            with admin.cursor() as cur:
                cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def table(service: str, rows: list[dict], as_of: str) -> list[str]:
    met = sum(1 for r in rows if r["is_met"])
    worst = min(rows, key=lambda r: r["availability_pct"])
    out = [
        f"Service {service}, objective 99.9 % availability per UTC month (24x7, maintenance excluded,"
        f" measured_by reported_outages), as_of {as_of}.",
        "",
        "| month | agreed min | maintenance min | downtime min | availability % | met | budget remaining min"
        " | complete |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['period_start']:%Y-%m} | {r['agreed_minutes']} | {r['maintenance_minutes']}"
            f" | {r['downtime_minutes']} | {r['availability_pct']} | {'yes' if r['is_met'] else 'no'}"
            f" | {r['error_budget_remaining_minutes']} | {'yes' if r['is_period_complete'] else 'no'} |"
        )
    out += [
        "",
        f"Months met: {met} / {len(rows)}. Worst month: {worst['period_start']:%Y-%m}"
        f" ({worst['availability_pct']} %).",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server-dsn", required=True, help="DSN of any database on the server")
    parser.add_argument("--as-of", default=AS_OF)
    parser.add_argument("--write-report", action="store_true")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    service, rows = run(args.server_dsn, args.as_of, args.keep_database)
    lines = table(service, rows, args.as_of)
    print("\n".join(lines))
    if args.write_report:
        text = REPORT.read_text() if REPORT.exists() else ""
        start, end = "<!-- table (generated) -->", "<!-- end table -->"
        generated = f"{start}\n" + "\n".join(lines) + f"\n{end}"
        if start in text and end in text:
            text = text[: text.index(start)] + generated + text[text.index(end) + len(end):]
        else:
            text = "# Status-page availability report\n\n" + generated + "\n"
        REPORT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
