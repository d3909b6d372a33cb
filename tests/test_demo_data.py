"""The demo drop generator: deterministic, plausible, and clean for the loader."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from slm_platform import cli, demo_data
from slm_platform.canonical import ENTITY_BY_NAME, TSTZ
from slm_platform.demo_data import demo_window, generate
from slm_platform.loader import load_drop

OFFSET_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out)


def test_same_seed_gives_identical_bytes_other_seed_differs(drop, tmp_path: Path) -> None:
    first, counts = drop
    again = generate(tmp_path / "again")
    assert again == counts
    for name in ENTITY_BY_NAME:
        assert (first / f"{name}.csv").read_bytes() == (tmp_path / "again" / f"{name}.csv").read_bytes(), name
    generate(tmp_path / "other", seed=7)
    assert (tmp_path / "other" / "tickets.csv").read_bytes() != (first / "tickets.csv").read_bytes()


def test_files_match_the_canonical_format(drop) -> None:
    out, counts = drop
    for name, spec in ENTITY_BY_NAME.items():
        rows = read(out / f"{name}.csv")
        assert len(rows) == counts[name] > 0, name
        assert list(rows[0]) == list(spec.column_names), name
        keys = [tuple(r[k] for k in spec.key) for r in rows]
        assert len(set(keys)) == len(keys), f"duplicate keys in {name}"
        for col, pgtype in spec.columns:
            values = [r[col] for r in rows if r[col]]
            if pgtype == TSTZ:
                bad = [v for v in values if not OFFSET_TS.match(v)]
                assert not bad, (name, col, bad[:3])
            if col in spec.enums:
                assert set(values) <= set(spec.enums[col]), (name, col)


def test_content_is_plausible(drop) -> None:
    out, counts = drop
    tickets = read(out / "tickets.csv")
    assert 300 <= len(tickets) <= 700
    assert {t["client_code"] for t in tickets} == {"ACME", "GLOBEX", "INITECH"}
    assert set(Counter(t["ticket_type"] for t in tickets)) == {
        "incident",
        "request",
        "complaint",
        "problem",
        "change",
    }
    assert set(Counter(t["priority"] for t in tickets)) == {"P1", "P2", "P3", "P4"}
    majors = [t for t in tickets if t["is_major"] == "true"]
    assert majors and all(t["priority"] == "P1" for t in majors)
    assert any(not t["resolved_at"] for t in tickets), "some tickets are still open at the end of the month"
    assert any(t["parent_ticket_id"] for t in tickets)
    assert {"ServiceDesk", "Network", "Carrier-X"} <= {t["assignment_group"] for t in tickets} | {
        e["to_value"] for e in read(out / "ticket_events.csv") if e["field"] == "assignment_group"
    }
    for t in tickets:
        opened = datetime.fromisoformat(t["opened_at"])
        assert date(2026, 10, 1) <= opened.date() <= date(2026, 11, 1)
        for col in ("first_response_at", "resolved_at", "closed_at", "updated_at"):
            if t[col]:
                assert datetime.fromisoformat(t[col]) >= opened, (t["ticket_id"], col)
    # Paris is +02:00 before the DST change of 2026-10-25 and +01:00 after it.
    acme = {t["opened_at"][-6:] for t in tickets if t["client_code"] == "ACME"}
    assert acme == {"+02:00", "+01:00"}

    events = read(out / "ticket_events.csv")
    assert {e["ticket_id"] for e in events} == {t["ticket_id"] for t in tickets}
    assert any(e["to_value"] == "pending_customer" for e in events)
    # Every ticket's history starts with status new at opened_at.
    first_status = {}
    for e in sorted(events, key=lambda e: (e["ticket_id"], datetime.fromisoformat(e["occurred_at"]))):
        if e["field"] == "status":
            first_status.setdefault(e["ticket_id"], e)
    for t in tickets:
        e = first_status[t["ticket_id"]]
        assert e["to_value"] == "new" and e["occurred_at"] == t["opened_at"]

    checks = read(out / "checks.csv")
    by_service: dict[str, list[datetime]] = {}
    for c in checks:
        by_service.setdefault(c["service_code"], []).append(datetime.fromisoformat(c["checked_at"]))
    for times in by_service.values():
        steps = Counter(b - a for a, b in zip(times, times[1:], strict=False))
        assert steps.most_common(1)[0][0] == timedelta(minutes=5)
    # Every outage shows as down checks of its service.
    for o in read(out / "outages.csv"):
        start, end = datetime.fromisoformat(o["started_at"]), datetime.fromisoformat(o["ended_at"])
        inside = [
            c
            for c in checks
            if c["service_code"] == o["service_code"]
            and start <= datetime.fromisoformat(c["checked_at"]) < end
        ]
        assert inside and all(c["status"] == "down" for c in inside)
    assert {m["approved"] for m in read(out / "maintenance.csv")} == {"true", "false"}
    assert {s["survey_type"] for s in read(out / "surveys.csv")} == {
        "transactional",
        "relationship",
        "review",
    }


def test_two_months(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", start=date(2026, 9, 1))
    two = generate(tmp_path / "two", start=date(2026, 9, 1), months=2)
    assert 1.6 * one["tickets"] < two["tickets"] < 2.4 * one["tickets"]
    months = {t["opened_at"][:7] for t in read(tmp_path / "two" / "tickets.csv")}
    assert months == {"2026-09", "2026-10"}


def test_every_file_loads_without_quarantine(fresh_db: str, drop) -> None:
    out, counts = drop
    results = load_drop(fresh_db, out)
    assert {r.entity: (r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results} == {
        name: (n, n, 0) for name, n in counts.items()
    }


# ---------------------------------------------------------------------------------- the demo's history

CUT_OFF = date(2026, 11, 1)  # the demo's run date: its nightly's cut-off


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo drop as `./slm generate` writes it by default."""
    out = tmp_path_factory.mktemp("history")
    assert cli.main(["generate", "--out", str(out)]) == 0
    return out


def test_demo_window_is_the_13_months_before_the_demo_date() -> None:
    assert demo_window() == (date(2025, 10, 1), 13)
    assert demo_window(date(2026, 11, 15), 4) == (date(2026, 7, 1), 4)
    assert demo_window(date(2026, 1, 1), 1) == (date(2025, 12, 1), 1)
    with pytest.raises(ValueError):
        demo_window(CUT_OFF, 0)


def test_cli_default_is_a_year_of_history_deterministic(history: Path, tmp_path: Path) -> None:
    counts = generate(tmp_path / "again", start=date(2025, 10, 1), months=13)
    for name in ENTITY_BY_NAME:
        assert (history / f"{name}.csv").read_bytes() == (tmp_path / "again" / f"{name}.csv").read_bytes(), (
            name
        )
    months = Counter(t["opened_at"][:7] for t in read(history / "tickets.csv"))
    assert sorted(months) == [f"2025-{m}" for m in ("10", "11", "12")] + [
        f"2026-{m:02d}" for m in range(1, 11)
    ]
    assert all(380 <= n <= 600 for n in months.values()), months  # every month has a month's volume
    assert counts["tickets"] == sum(months.values())
    # --start and --months still choose the window.
    assert (
        cli.main(["generate", "--out", str(tmp_path / "two"), "--start", "2026-09-01", "--months", "2"]) == 0
    )
    assert {t["opened_at"][:7] for t in read(tmp_path / "two" / "tickets.csv")} == {"2026-09", "2026-10"}
    assert cli.main(["generate", "--out", str(tmp_path / "four"), "--months", "4"]) == 0
    assert {t["opened_at"][:7] for t in read(tmp_path / "four" / "tickets.csv")} == {
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
    }


def test_history_has_coverage_gaps_in_some_months(history: Path) -> None:
    """Unmeasured share of each monitored service's month, from the 5-minute grid: some months lose over 1 %
    (the review's coverage threshold), most do not."""
    seen: Counter = Counter()
    for c in read(history / "checks.csv"):
        seen[(c["service_code"], c["checked_at"][:7])] += 1
    missing = {}
    for (service, month), n in seen.items():
        first = date.fromisoformat(month + "-01")
        days = ((first + timedelta(days=32)).replace(day=1) - first).days
        missing[(service, month)] = 1 - n / (days * 288)
    below = sorted(k for k, share in missing.items() if share > 0.01)
    assert 3 <= len(below) <= len(missing) // 4, below
    assert len({month for _, month in below}) >= 3, below


def test_history_has_overdue_and_late_sip_actions(history: Path) -> None:
    actions = read(history / "sip_actions.csv")
    overdue = [a for a in actions if a["status"] == "open" and date.fromisoformat(a["due_on"]) < CUT_OFF]
    late = [
        a
        for a in actions
        if a["closed_at"] and datetime.fromisoformat(a["closed_at"]).date() > date.fromisoformat(a["due_on"])
    ]
    assert overdue and late
    # Overdue ones come from several months, not only the last: the register has a past.
    assert len({a["opened_at"][:7] for a in overdue}) >= 3, overdue
    assert len(overdue) < len(actions) / 4
    # A closed action was closed after it was opened, and before the cut-off.
    for a in actions:
        if a["closed_at"]:
            closed = datetime.fromisoformat(a["closed_at"])
            assert (
                datetime.fromisoformat(a["opened_at"]) < closed < datetime(2026, 11, 1, tzinfo=closed.tzinfo)
            )


def test_history_details_leave_every_other_value_unchanged(
    history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without long gaps and slow actions the drop differs only in those: the rest drew the same values."""
    monkeypatch.setattr(demo_data, "LONG_GAP_SHARE", 0.0)
    generate(tmp_path / "plain", start=date(2025, 10, 1), months=13)
    for name in ("tickets", "ticket_events", "surveys", "outages", "maintenance"):
        assert (history / f"{name}.csv").read_bytes() == (tmp_path / "plain" / f"{name}.csv").read_bytes(), (
            name
        )
    plain = {tuple(r.values()) for r in read(tmp_path / "plain" / "checks.csv")}
    gapped = {tuple(r.values()) for r in read(history / "checks.csv")}
    assert gapped < plain  # the same checks, some removed
    opened = {a["action_id"]: (a["opened_at"], a["due_on"]) for a in read(history / "sip_actions.csv")}
    assert opened == {
        a["action_id"]: (a["opened_at"], a["due_on"]) for a in read(tmp_path / "plain" / "sip_actions.csv")
    }
