"""Our SLA figures on the real ServiceNow export, compared with ServiceNow's own ``made_sla`` flag.

Run from the repository root with the Airflow environment:

    .venvs/airflow/bin/python tools/servicenow_sla_report.py [--home /tmp/snow_home] [--keep-stack]

It starts a throw-away stack (PostgreSQL only) under ``--home`` (SLM_HOME), imports
``/work/shared/data/servicenow_incident_event_log.csv.gz`` with ``--timezone Europe/Lisbon`` (the data set
comes from a Portuguese-style company, Amaral et al. 2018, and the file's wall times carry no zone), loads
``contracts/servicenow_sample.yaml``, runs ``dbt build`` on the whole project, then prints and writes
``docs/servicenow_sla_report.md``:

- resolution attainment per priority, over the whole period and per quarter (client time zone);
- agreement of ServiceNow's ``made_sla`` (of the incident's last update) with our resolution ``is_met``;
- evidence about the differences: samples, reopen counts, the response objective, and the single target
  per priority that would agree best with ``made_sla``.

The stack is stopped at the end (also on failure) unless ``--keep-stack``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from slm_platform.settings import shared_data_file

REPO = Path(__file__).resolve().parents[1]
EXPORT = shared_data_file("servicenow_incident_event_log.csv.gz")
CONTRACT = REPO / "contracts" / "servicenow_sample.yaml"
REPORT = REPO / "docs" / "servicenow_sla_report.md"
ZONE = "Europe/Lisbon"
PRIORITIES = ("P1", "P2", "P3", "P4")
MARKER = "<!-- interpretation (hand-written, kept when the report is regenerated) -->"


def slm(home: Path, *args: str) -> str:
    """Run the operator CLI with this report's SLM_HOME; its progress goes to our stderr."""
    env = {**os.environ, "SLM_HOME": str(home)}
    proc = subprocess.run(
        [str(REPO / "slm"), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    return proc.stdout


@dataclass
class Source:
    """What the export says about an incident at its last update (not in the canonical format)."""

    made_sla: bool
    reopen_count: int
    reassignment_count: int
    sys_mod_count: int
    updates: int


def read_export(path: Path) -> dict[str, Source]:
    """Last row per incident, in sys_updated_at order like the converter (file order on ties)."""
    rows: dict[str, list[tuple[tuple, int, dict[str, str]]]] = defaultdict(list)
    with gzip.open(path, "rb") as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
        for i, row in enumerate(reader):
            d, t = row["sys_updated_at"].split(" ")
            day, month, year = (int(x) for x in d.split("/"))
            hour, minute = (int(x) for x in t.split(":"))
            rows[row["number"]].append(((year, month, day, hour, minute), i, row))
    out = {}
    for number, group in rows.items():
        last = max(group, key=lambda g: (g[0], g[1]))[2]
        out[number] = Source(
            made_sla=last["made_sla"] == "true",
            reopen_count=int(last["reopen_count"]),
            reassignment_count=int(last["reassignment_count"]),
            sys_mod_count=int(last["sys_mod_count"]),
            updates=len(group),
        )
    return out


def query(dsn: str, sql: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f} %" if b else "n/a"


def table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def best_target(points: list[tuple[float, bool]]) -> tuple[float, int]:
    """The target t maximising #(made_sla == (elapsed <= t)); candidates are the observed elapsed values."""
    pts = sorted(points)
    n_true = sum(1 for _, m in pts if m)
    # t below every elapsed: every ticket predicted false → agreement = #false
    best_t, best = 0.0, len(pts) - n_true
    agree = best
    i = 0
    while i < len(pts):
        t = pts[i][0]
        while i < len(pts) and pts[i][0] == t:
            agree += 1 if pts[i][1] else -1
            i += 1
        if agree > best:
            best_t, best = t, agree
    return best_t, best


@dataclass
class Figures:
    """What the analysis reads from the warehouse (the SNOW client's SLA rows, the load's counts)."""

    res: dict[str, tuple]  # ticket_id -> its resolution row of fct_ticket_sla (columns below)
    resp: dict[str, tuple]  # ticket_id -> its response row
    tickets: int  # rows in raw.tickets
    quarantined: list[tuple]  # (reason, rows) of raw.quarantine, most frequent first
    ev: dict[str, tuple]  # ticket_id -> (pending_customer pauses, reopenings, reassignments, priority moves)


# The columns of a row of Figures.res / Figures.resp (fetch_figures), by index:
# 0 ticket_id, 1 priority, 2 metric, 3 target_minutes, 4 elapsed_business_minutes,
# 5 paused_business_minutes, 6 is_met, 7 is_breached_open, 8 open_at_cutoff
# The groups of decided tickets, by (our is_met, their made_sla).
GROUP_OF = {
    (True, True): "agree",
    (False, False): "agree",
    (True, False): "ours true / theirs false",
    (False, True): "ours false / theirs true",
}
DISAGREEMENTS = ("ours true / theirs false", "ours false / theirs true")


def fetch_figures(dsn: str) -> Figures:
    sla = query(
        dsn,
        """
        select ticket_id, priority, metric, target_minutes, elapsed_business_minutes, paused_business_minutes,
               is_met, is_breached_open, clock_stopped_at is null as open_at_cutoff
        from marts_build.fct_ticket_sla where client_code = 'SNOW'
        """,
    )
    res = {r[0]: r for r in sla if r[2] == "resolution"}
    resp = {r[0]: r for r in sla if r[2] == "response"}
    tickets = query(dsn, "select count(*) from raw.tickets")[0][0]
    quarantined = query(dsn, "select reason, count(*) from raw.quarantine group by reason order by 2 desc")
    events = query(
        dsn,
        """select ticket_id, count(*) filter (where field = 'status' and to_value = 'pending_customer'),
                  count(*) filter (where field = 'status' and from_value in ('resolved', 'closed')
                                   and to_value not in ('resolved', 'closed', 'cancelled')),
                  count(*) filter (where field = 'assignment_group'),
                  count(*) filter (where field = 'priority')
           from raw.ticket_events group by ticket_id""",
    )
    ev = {e[0]: e[1:] for e in events}
    return Figures(res, resp, tickets, quarantined, ev)


def data_section(fig: Figures, src: dict[str, Source], timings: dict[str, float]) -> list[str]:
    md = ["## Data", ""]
    md += [
        f"- Export: {len(src)} incidents read from `{EXPORT.name}` (zone {ZONE}); {fig.tickets} tickets "
        f"loaded in `raw.tickets`; {len(fig.res)} resolution rows and {len(fig.resp)} response rows in "
        "`fct_ticket_sla`.",
    ]
    for reason, n in fig.quarantined:
        md.append(f"- Quarantined by the loader: {n} row(s): {reason}")
    md.append("- Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    md.append("")
    return md


def attainment_section(dsn: str) -> list[str]:
    """Resolution attainment per priority over the whole period (checked against the yearly mart rows),
    then per quarter."""
    md: list[str] = []
    whole = query(
        dsn,
        """select priority, count(is_met), count(*) filter (where is_met), count(*),
                  count(*) filter (where is_met is null)
           from marts_build.fct_ticket_sla where client_code = 'SNOW' and metric = '{m}'
           group by priority order by priority""".replace("{m}", "resolution"),
    )
    year_sum = dict(
        (p, (c, m))
        for p, c, m in query(
            dsn,
            """select priority, sum(tickets_counted), sum(tickets_met) from marts_build.fct_sla_attainment
               where client_code = 'SNOW' and metric = 'resolution' and period_type = 'year'
               group by priority""",
        )
    )
    md += ["## Resolution attainment (our figures, `contracts/servicenow_sample.yaml`)", ""]
    md += ["Whole period (tickets counted = clock stopped, or open and already breached):", ""]
    rows = []
    for p, counted, met, _all_rows, undecided in whole:
        yc, ym = year_sum.get(p, (None, None))
        check = "ok" if (yc, ym) == (counted, met) else f"MISMATCH ({yc}/{ym})"
        rows.append([p, counted, met, pct(met, counted), undecided, check])
    tc, tm = sum(r[1] for r in rows), sum(r[2] for r in rows)
    rows.append(["all", tc, tm, pct(tm, tc), sum(r[4] for r in rows), ""])
    md += table(
        [
            "priority",
            "counted",
            "met",
            "attainment",
            "open, within target (not counted)",
            "= Σ fct_sla_attainment (year)",
        ],
        rows,
    )
    md.append("")
    quarters = query(
        dsn,
        """select period_start, priority, sum(tickets_counted), sum(tickets_met)
           from marts_build.fct_sla_attainment
           where client_code = 'SNOW' and metric = 'resolution' and period_type = 'quarter'
           group by period_start, priority order by period_start, priority""",
    )
    byq: dict = defaultdict(dict)
    for q, p, c, m in quarters:
        byq[q][p] = (int(c), int(m))
    qrows = []
    for q in sorted(byq):
        cells = [f"{q.year}-Q{(q.month - 1) // 3 + 1}"]
        for p in PRIORITIES:
            c, m = byq[q].get(p, (0, 0))
            cells.append(f"{m}/{c} ({pct(m, c)})" if c else "–")
        qrows.append(cells)
    md += [
        "Per quarter (met/counted, attainment; Σ over the SNOW-<location> services, from "
        "`fct_sla_attainment`):",
        "",
    ]
    md += table(["quarter", *PRIORITIES], qrows)
    md.append("")
    return md


def confusion_section(res: dict[str, tuple], src: dict[str, Source]) -> list[str]:
    """ServiceNow's made_sla against our resolution is_met, per priority."""
    md = ["## ServiceNow `made_sla` vs our resolution `is_met`", ""]
    md += ["Tickets where our verdict is decided (is_met not null) and the export has the incident:", ""]
    crows = []
    confusion: dict[str, Counter] = defaultdict(Counter)
    for tid, r in res.items():
        if r[6] is None or tid not in src:
            continue
        ours, theirs = bool(r[6]), src[tid].made_sla
        confusion[r[1]][(ours, theirs)] += 1
        confusion["all"][(ours, theirs)] += 1
    for p in (*PRIORITIES, "all"):
        c = confusion[p]
        n = sum(c.values())
        agree = c[(True, True)] + c[(False, False)]
        crows.append(
            [p, n, c[(True, True)], c[(False, False)], c[(True, False)], c[(False, True)], pct(agree, n)]
        )
    md += table(
        [
            "priority",
            "tickets",
            "both true",
            "both false",
            "ours true / theirs false",
            "ours false / theirs true",
            "agreement",
        ],
        crows,
    )
    md.append("")
    return md


def h1_response_sla(resp: dict[str, tuple], src: dict[str, Source]) -> list[str]:
    """H1: made_sla against our response is_met."""
    rc: Counter = Counter()
    for tid, r in resp.items():
        if r[6] is None or tid not in src:
            continue
        rc[(bool(r[6]), src[tid].made_sla)] += 1
    n = sum(rc.values())
    return [
        f"- **H1, made_sla is a response SLA?** Agreement of made_sla with our *response* is_met: "
        f"{pct(rc[(True, True)] + rc[(False, False)], n)} over {n} tickets "
        f"(both true {rc[(True, True)]}, both false {rc[(False, False)]}, ours true/theirs false "
        f"{rc[(True, False)]}, ours false/theirs true {rc[(False, True)]})."
    ]


def h2_best_targets(res: dict[str, tuple], src: dict[str, Source]) -> list[str]:
    """H2: the best single target per priority, on our elapsed (pauses deducted) and on raw elapsed."""
    md = [
        "- **H2, a different resolution target?** For each priority, the single target (minutes, 24x7) that "
        "maximises agreement with made_sla over the tickets whose clock stopped; also with the pause not "
        "deducted (elapsed + paused):"
    ]
    md.append("")
    h2 = []
    for p in PRIORITIES:
        pts = [
            (float(r[4]), src[r[0]].made_sla) for r in res.values() if r[1] == p and not r[8] and r[0] in src
        ]
        raw_pts = [
            (float(r[4]) + float(r[5]), src[r[0]].made_sla)
            for r in res.values()
            if r[1] == p and not r[8] and r[0] in src
        ]
        if not pts:
            continue
        target = next(float(r[3]) for r in res.values() if r[1] == p)
        ours_agree = sum(1 for e, m in pts if (e <= target) == m)
        t1, a1 = best_target(pts)
        t2, a2 = best_target(raw_pts)
        share_true = sum(1 for _, m in pts if m)
        h2.append(
            [
                p,
                len(pts),
                f"{share_true} ({pct(share_true, len(pts))})",
                f"{target:.0f}",
                pct(ours_agree, len(pts)),
                f"{t1:.0f} ({t1 / 60:.1f} h)",
                pct(a1, len(pts)),
                f"{t2:.0f} ({t2 / 60:.1f} h)",
                pct(a2, len(pts)),
            ]
        )
    md += table(
        [
            "priority",
            "stopped tickets",
            "made_sla true",
            "our target",
            "agreement at our target",
            "best target (paused deducted)",
            "agreement",
            "best target (elapsed+paused)",
            "agreement",
        ],
        h2,
    )
    md.append("")
    return md


def disagreement_groups(res: dict[str, tuple], src: dict[str, Source]) -> dict[str, list[str]]:
    """The decided tickets the export has, by group (see GROUP_OF), in the order of ``res``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for tid, r in res.items():
        if r[6] is None or tid not in src:
            continue
        groups[GROUP_OF[(bool(r[6]), src[tid].made_sla)]].append(tid)
    return groups


def _mean(vals: list[float]) -> str:
    return f"{sum(vals) / len(vals):.1f}" if vals else "n/a"


def h3_group_profiles(
    groups: dict[str, list[str]], res: dict[str, tuple], src: dict[str, Source], ev: dict[str, tuple]
) -> list[str]:
    """H3: reopen counts, pauses, reassignments among the agreeing and the disagreeing tickets."""
    hrows = []
    for key in ("agree", *DISAGREEMENTS):
        ids = groups.get(key, [])
        if not ids:
            continue
        k = len(ids)
        hrows.append(
            [
                key,
                k,
                pct(sum(1 for t in ids if src[t].reopen_count > 0), k),
                _mean([src[t].reassignment_count for t in ids]),
                _mean([src[t].updates for t in ids]),
                pct(sum(1 for t in ids if ev.get(t, (0,))[0] > 0), k),
                _mean([float(res[t][4]) / 60 for t in ids]),
                _mean([float(res[t][5]) / 60 for t in ids]),
            ]
        )
    md = ["- **H3, reopened / paused / reassigned tickets?** Profile of each group:"]
    md.append("")
    md += table(
        [
            "group",
            "tickets",
            "reopened (reopen_count>0)",
            "mean reassignments",
            "mean updates",
            "had a pending_customer pause",
            "mean elapsed h (ours)",
            "mean paused h",
        ],
        hrows,
    )
    md.append("")
    return md


def disagreement_samples(
    groups: dict[str, list[str]], res: dict[str, tuple], src: dict[str, Source], ev: dict[str, tuple]
) -> list[str]:
    """Up to three disagreeing tickets per group and priority, with what may explain them."""
    md = ["### Samples of disagreeing tickets", ""]
    srows = []
    for key in DISAGREEMENTS:
        for p in PRIORITIES:
            ids = sorted(t for t in groups.get(key, []) if res[t][1] == p)[:3]
            for t in ids:
                r, s = res[t], src[t]
                e = ev.get(t, (0, 0, 0, 0))
                srows.append(
                    [
                        key,
                        t,
                        p,
                        f"{float(r[4]) / 60:.1f}",
                        f"{float(r[3]) / 60:.0f}",
                        f"{float(r[5]) / 60:.1f}",
                        s.reopen_count,
                        s.reassignment_count,
                        s.updates,
                        e[0],
                        e[2],
                    ]
                )
    md += table(
        [
            "group",
            "ticket",
            "prio",
            "elapsed h",
            "target h",
            "paused h",
            "reopen_count",
            "reassignments",
            "updates",
            "pending_customer events",
            "assignment events",
        ],
        srows,
    )
    md.append("")
    return md


def analyse(dsn: str, src: dict[str, Source], timings: dict[str, float]) -> list[str]:
    """The report's body: data, attainment, made_sla vs is_met, and the evidence about the differences."""
    fig = fetch_figures(dsn)
    groups = disagreement_groups(fig.res, src)
    return [
        *data_section(fig, src, timings),
        *attainment_section(dsn),
        *confusion_section(fig.res, src),
        "## Why they differ: evidence",
        "",
        *h1_response_sla(fig.resp, src),
        *h2_best_targets(fig.res, src),
        *h3_group_profiles(groups, fig.res, src, fig.ev),
        *disagreement_samples(groups, fig.res, src, fig.ev),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default="/tmp/snow_home", help="SLM_HOME of the throw-away stack")
    ap.add_argument("--keep-stack", action="store_true")
    ap.add_argument(
        "--skip-import", action="store_true", help="the stack at --home already holds the imported export"
    )
    args = ap.parse_args(argv)
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SLM_HOME"] = str(home)  # for in-process helpers too
    from slm_platform.contracts.load import load_contracts
    from slm_platform.transform.dbt_runner import dbt, dbt_env

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    build_note = "dbt build succeeded"
    try:
        t = time.monotonic()
        slm(home, "stack", "up", "--only", "pg")
        dsn = slm(home, "stack", "dsn").strip()
        timings["stack up"] = time.monotonic() - t
        t = time.monotonic()
        if not args.skip_import:
            slm(
                home,
                "import",
                "servicenow-export",
                str(EXPORT),
                "--timezone",
                ZONE,
                "--client",
                "SNOW",
                "--country",
                "PT",
                "--calendar",
                "24x7",
            )
        timings["import"] = time.monotonic() - t
        t = time.monotonic()
        load_contracts(dsn, CONTRACT)
        # Freshly loaded raw tables have no planner statistics until autovacuum gets to them (about a
        # minute later): the first run planned int_tickets_matched_to_objectives blind and ran it for
        # 13 min, while the same query takes 0.6 s once the tables are analysed.
        with psycopg2.connect(dsn) as conn:
            conn.autocommit = True
            conn.cursor().execute("analyze")
        timings["contracts + analyze"] = time.monotonic() - t
        t = time.monotonic()
        try:
            dbt(["build"], dbt_env(dsn))
        except Exception as exc:  # a failing data test must not hide the figures: report it instead
            build_note = f"dbt build FAILED, figures are from what was built: {str(exc)[-1500:]}"
            print(build_note, file=sys.stderr)
        timings["dbt build"] = time.monotonic() - t
        t = time.monotonic()
        src = read_export(EXPORT)
        md = analyse(dsn, src, timings)
        timings["analysis"] = time.monotonic() - t
    finally:
        if not args.keep_stack:
            slm(home, "stack", "down")
    total = time.monotonic() - t0
    head = [
        "# SLA figures on the real ServiceNow export vs its own `made_sla`",
        "",
        "Generated by `tools/servicenow_sla_report.py` (throw-away stack, PostgreSQL only). Contract: "
        "`contracts/servicenow_sample.yaml` (an assumption: 24x7, P1 4 h / P2 8 h / P3 24 h / P4 72 h "
        f"resolution, pause on pending_customer). Import zone {ZONE}. {build_note}. Total run {total:.0f} s.",
        "",
    ]
    text = "\n".join(head + md) + "\n"
    # The interpretation is written by a person after reading the figures: keep it across regenerations.
    if REPORT.exists() and MARKER in REPORT.read_text():
        text += "\n" + MARKER + REPORT.read_text().split(MARKER, 1)[1]
    REPORT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
