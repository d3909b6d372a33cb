"""Our resolution verdicts on a Jira extract, compared per ticket with JSM's own "Time to resolution" SLA.

    .venvs/airflow/bin/python tools/jira_sla_report.py DROP [--sla DROP.jsm/jsm_sla.csv]
        [--contracts contracts/jira_sample.yaml]
        [--jsm-calendar P1=24x7 --jsm-calendar P2=9-17@Europe/Paris ...]
        [--jsm-pause pending_customer --jsm-pause awaiting_vendor]

Computed in Python with the reference business-time implementation (slm_platform/reference, the one the dbt
models are tested against), not through dbt: the comparison needs several *variants* of our computation per
ticket (our calendar / JSM's, our pauses / JSM's, one clock / JSM's cycles) to explain each difference, which
the warehouse models do not offer. A ticket is compared when it is an incident, its JSM SLA has a completed
cycle and it is resolved (Jira's resolutiondate).

- ours: business minutes from opened_at to resolved_at on the objective's calendar, minus the pauses in the
  agreement's pause_statuses (from the ticket's status events); met when <= the target;
- JSM: breached when any completed cycle breached (JSM's own report counts a breached cycle);
- explanation of a disagreement: the first of (JSM's calendar, JSM's pause statuses, JSM's cycles: the clock
  restarting at each reopen) which, applied on top of the previous ones, gives JSM's verdict; with all three,
  our elapsed minutes must equal the sum of JSM's cycles (``reproduced``), else the ticket is ``unexplained``.

JSM's SLA API does not say which calendar a goal uses: the JSM configuration is an input (``--jsm-calendar``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from slm_platform.contracts.catalogue import DAYS, Calendar, load_catalogue  # noqa: E402
from slm_platform.reference.business_time import business_minutes  # noqa: E402

DONE = ("resolved", "closed", "cancelled")


def weekday_calendar(code: str, zone: str, start: int, end: int) -> Calendar:
    """A Monday-Friday ``start``-``end`` h calendar without holidays (JSM's default "Sample 9-5 Calendar")."""
    hours = {d: ((time(start), time(end)),) if d in DAYS[:5] else () for d in DAYS}
    return Calendar(code, zone, hours)


ALWAYS = Calendar("24/7", "UTC", None)


@dataclass
class Verdict:
    ticket_id: str
    priority: str
    target: float
    ours_minutes: float
    ours_met: bool
    jsm_minutes: float
    jsm_met: bool
    explanation: str = ""  # "" when the verdicts agree


@dataclass
class Comparison:
    verdicts: list[Verdict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # why a ticket was not compared
    reproduced: int = 0  # tickets whose JSM elapsed minutes our computation reproduces exactly (JSM config)

    @property
    def compared(self) -> int:
        return len(self.verdicts)

    @property
    def agreed(self) -> int:
        return sum(1 for v in self.verdicts if v.ours_met == v.jsm_met)

    @property
    def agreement_pct(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 0.0

    def explanations(self) -> Counter:
        return Counter(v.explanation for v in self.verdicts if v.explanation)


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pauses(statuses: list[tuple[datetime, str]], pause: set[str], end: datetime):
    out = []
    for (t0, st), nxt in zip(statuses, [*statuses[1:], (None, None)], strict=True):
        if st in pause:
            out.append((t0, min(nxt[0] or end, end)))
    return [(a, b) for a, b in out if a < b]


def _cycles(opened: datetime, statuses: list[tuple[datetime, str]], resolved: datetime):
    """JSM's cycles: from opening (or a reopen) to the next move into a done status, up to ``resolved``."""
    cycles, start = [], opened
    for t, st in statuses:
        if t > resolved:
            break
        if st in DONE and start is not None:
            cycles.append((start, t))
            start = None
        elif st not in DONE and start is None:
            start = t
    return cycles or [(opened, resolved)]


def compare(
    drop: Path,
    sla_csv: Path,
    contracts: Path,
    jsm_calendars: dict[str, Calendar],
    jsm_pause: set[str],
) -> Comparison:
    cat = load_catalogue(contracts)
    tickets = {t["ticket_id"]: t for t in _read(drop / "tickets.csv")}
    statuses: dict[str, list[tuple[datetime, str]]] = {}
    for e in _read(drop / "ticket_events.csv"):
        if e["field"] == "status":
            statuses.setdefault(e["ticket_id"], []).append((_t(e["occurred_at"]), e["to_value"]))
    jsm: dict[str, list[dict[str, str]]] = {}
    for r in _read(sla_csv):
        if r["metric"] == "resolution" and r["ongoing"] == "false":
            jsm.setdefault(r["ticket_id"], []).append(r)
    out = Comparison()
    for tid, t in sorted(tickets.items()):
        if t["ticket_type"] != "incident":
            out.skipped["not an incident"] += 1
            continue
        if tid not in jsm:
            out.skipped["no completed JSM cycle"] += 1
            continue
        if not t["resolved_at"] or t["status"] not in ("resolved", "closed"):
            out.skipped["not resolved (cancelled or reopened)"] += 1
            continue
        agreement = next((a for a in cat.agreements if a.kind == "SLA" and a.party == t["client_code"]), None)
        objective = next(
            (
                o
                for o in (agreement.objectives if agreement else ())
                if o.metric == "resolution" and o.ticket_type == "incident" and o.priority == t["priority"]
            ),
            None,
        )
        if objective is None:
            out.skipped["no objective"] += 1
            continue
        opened, resolved = _t(t["opened_at"]), _t(t["resolved_at"])
        sts = sorted(statuses.get(tid, []))
        target = float(objective.target_minutes)

        def elapsed(cal: Calendar, pause: set[str], cycles: bool, o=opened, s=sts, r=resolved) -> float:
            spans = _cycles(o, s, r) if cycles else [(o, r)]
            return float(sum(business_minutes(cal, a, b, _pauses(s, pause, b)) for a, b in spans))

        ours_cal, jsm_cal = cat.calendars[objective.calendar], jsm_calendars[t["priority"]]
        ours = elapsed(ours_cal, set(agreement.pause_statuses), False)
        rows = jsm[tid]
        jsm_minutes = sum(float(r["elapsed_minutes"]) for r in rows)
        jsm_met = not any(r["breached"] == "true" for r in rows)
        full = elapsed(jsm_cal, jsm_pause, True)
        if abs(full - jsm_minutes) < 1e-6:
            out.reproduced += 1
        v = Verdict(tid, t["priority"], target, ours, ours <= target, jsm_minutes, jsm_met)
        if v.ours_met != jsm_met:
            ours_pause = set(agreement.pause_statuses)
            steps = [
                ("calendar (JSM's hours/holidays differ from ours)", elapsed(jsm_cal, ours_pause, False)),
                ("pause statuses (JSM also pauses other waits)", elapsed(jsm_cal, jsm_pause, False)),
                ("cycles (JSM restarts its clock at a reopen)", full),
            ]  # fmt: skip
            v.explanation = "unexplained"
            for why, minutes in steps:
                # JSM's breach is per cycle: with its cycles, compare cycle by cycle via its own flags
                met = minutes <= target if why.startswith(("calendar", "pause")) else jsm_met
                if met == jsm_met and (not why.startswith("cycles") or abs(full - jsm_minutes) < 1e-6):
                    v.explanation = why
                    break
        out.verdicts.append(v)
    return out


def render(c: Comparison) -> str:
    lines = [
        f"tickets compared: {c.compared}; verdicts agree: {c.agreed} ({c.agreement_pct:.1f} %)",
        f"JSM elapsed minutes reproduced exactly with JSM's configuration: {c.reproduced} of {c.compared}",
    ]
    for why, n in c.explanations().most_common():
        lines.append(f"  differ, explained by {why}: {n}")
    for why, n in sorted(c.skipped.items()):
        lines.append(f"  not compared ({why}): {n}")
    return "\n".join(lines)


def _calendar_arg(value: str) -> tuple[str, Calendar]:
    prio, _, spec = value.partition("=")
    if spec == "24x7" or spec == "24/7":
        return prio, ALWAYS
    hours, _, zone = spec.partition("@")
    start, _, end = hours.partition("-")
    return prio, weekday_calendar(spec, zone or "UTC", int(start), int(end))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drop", type=Path)
    ap.add_argument("--sla", type=Path)
    ap.add_argument("--contracts", type=Path, default=REPO / "contracts" / "jira_sample.yaml")
    ap.add_argument("--jsm-calendar", action="append", type=_calendar_arg, default=[])
    ap.add_argument("--jsm-pause", action="append", default=[])
    a = ap.parse_args(argv)
    cals = dict(a.jsm_calendar) or {
        "P1": ALWAYS,
        **{p: weekday_calendar("9-5", "Europe/Paris", 9, 17) for p in ("P2", "P3", "P4")},
    }
    sla = a.sla or a.drop.with_name(a.drop.name + ".jsm") / "jsm_sla.csv"
    c = compare(a.drop, sla, a.contracts, cals, set(a.jsm_pause or ["pending_customer", "awaiting_vendor"]))
    print(render(c))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
