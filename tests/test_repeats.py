"""Repeats: the nightly's published marts depend on the night's interval and the data, not on history.

One warehouse, one small drop (the demo generator's one month, October 2026), six runs of the real DAG
through ``./slm nightly run`` (``airflow dags test``), in this order:

    D1, D2, D3            a backfill of three days in order (the first on an empty warehouse)
    D2, D1, D3            the same three days again out of order

After each run, a checksum of every published mart (every table of schema ``marts``, every row, every
column; the load bookkeeping marts aside, see BOOKKEEPING_TABLES). Asserted: the runs of one night give
equal checksums whatever ran before (D1 fresh = D1 after D2; D2 after D1 = D2 after D3; D3 after D2 = D3
after D1; a plain rerun of a night is test_nightly's), and different nights give different ones (so
equality is not a checksum of nothing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date

import psycopg2
import pytest

from slm_platform.settings import WAREHOUSE_DB, PgServer
from tests.conftest import slm, stop_and_remove

DAYS = {"D1": date(2026, 10, 20), "D2": date(2026, 10, 21), "D3": date(2026, 10, 22)}
ORDER = ("D1", "D2", "D3", "D2", "D1", "D3")
# Load bookkeeping, which every run changes by design: the data-quality marts list load batches (one row
# per batch of raw.load_batches, per batch and reason of raw.quarantine: each run adds its own, rows_loaded 0
# on a rerun), so they are left out whole. Every other mart is compared whole, every column.
BOOKKEEPING_TABLES = {"fct_load_batch", "fct_quarantine_reason"}


def mart_checksums(dsn: str, schema: str = "marts") -> dict[str, tuple[int, str]]:
    """(rows, md5 of the sorted rows' text) per table of ``schema``, the bookkeeping tables left out."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select table_name, array_agg(column_name::text order by ordinal_position)"
                " from information_schema.columns where table_schema = %s group by 1 order by 1",
                (schema,),
            )
            tables = cur.fetchall()
            out: dict[str, tuple[int, str]] = {}
            for table, columns in tables:
                if table in BOOKKEEPING_TABLES:
                    continue
                cols = ", ".join(f'"{c}"' for c in columns)
                cur.execute(
                    f"select count(*), coalesce(md5(string_agg(r, E'\\n' order by r)), '')"  # noqa: S608
                    f' from (select row({cols})::text as r from {schema}."{table}") t'
                )
                n, digest = cur.fetchone()
                out[table] = (n, digest)
            return out
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A stack of its own (cluster and Airflow): the first run meets an empty warehouse, and the suite's
    demo warehouse, which later modules read, is left alone."""
    home = tmp_path_factory.mktemp("repeats_home")
    try:
        slm(home, "stack", "up", "--only", "pg,airflow", timeout=900)
        drop = home / "drops" / "repeats"
        slm(home, "demo", "generate", "--months", "1", "--out", str(drop))
        pg = json.loads((home / "stack.json").read_text())["pg"]
        server = PgServer(pg["host"], int(pg["port"]), pg["user"], pg["password"])
        yield {"home": home, "drop": drop, "dsn": server.dsn(WAREHOUSE_DB)}
    finally:
        stop_and_remove(home)


def test_runs_of_a_night_give_the_same_marts_whatever_ran_before(stack: dict, record_property) -> None:
    sums: list[tuple[str, dict[str, tuple[int, str]]]] = []
    seconds: list[float] = []
    for key in ORDER:
        started = time.monotonic()
        slm(stack["home"], "nightly", "run", "--date", DAYS[key].isoformat(), "--drop", str(stack["drop"]))
        seconds.append(round(time.monotonic() - started, 1))
        sums.append((key, mart_checksums(stack["dsn"])))
        # written after every run, so a long run can be followed (and a failure read) from the file
        (stack["home"] / "repeats.json").write_text(json.dumps({"seconds": seconds, "sums": sums}, indent=1))
    record_property("nightly_seconds", seconds)
    print(f"nightly runs (s): {seconds}")

    tables = set(sums[0][1])
    assert len(tables) > 10 and all(set(s) == tables for _, s in sums)
    assert sum(1 for n, _ in sums[0][1].values() if n > 0) >= 10  # most marts hold rows
    by_day: dict[str, list[dict]] = {}
    for key, s in sums:
        by_day.setdefault(key, []).append(s)
    for key, runs in by_day.items():
        first = runs[0]
        for i, other in enumerate(runs[1:], start=2):
            differ = sorted(t for t in tables if other[t] != first[t])
            assert differ == [], f"{key}: run {i} of that night differs from its first in {differ}"
    # different nights, different figures (the cut-off moves open clocks and running periods)
    d1, d2, d3 = (by_day[k][0] for k in ("D1", "D2", "D3"))
    assert d1 != d2 and d2 != d3
