"""The demo drop generator: deterministic, plausible, and clean for the loader."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from slm_platform import cli
from slm_platform.canonical import ENTITY_BY_NAME, TSTZ
from slm_platform.load.loader import load_drop
from slm_platform.sources import demo_data
from slm_platform.sources.demo_data import demo_window, generate

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
    """The demo drop as `./slm demo generate` writes it by default."""
    out = tmp_path_factory.mktemp("history")
    assert cli.main(["demo", "generate", "--out", str(out)]) == 0
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
        cli.main(
            ["demo", "generate", "--out", str(tmp_path / "two"), "--start", "2026-09-01", "--months", "2"]
        )
        == 0
    )
    assert {t["opened_at"][:7] for t in read(tmp_path / "two" / "tickets.csv")} == {"2026-09", "2026-10"}
    assert cli.main(["demo", "generate", "--out", str(tmp_path / "four"), "--months", "4"]) == 0
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


# ---------------------------------------------------------------------------------- the profiles (issue 13)

# sha256 of `./slm demo generate` (13 months, seed 42) written by the generator before the profiles existed
# (commit 071d1e8): the s profile must stay the demo, byte for byte.
DEMO_SHA256 = {
    "checks.csv": "2ea0d1dc9df04490a078f3bbc7b260435611e3759d7944c236e47b1a620ac41a",
    "clients.csv": "f11d3db73093b94c58dc4142bacc16f62560f217985d36c18373e63000803ed1",
    "maintenance.csv": "6c6fd8340a67612fcf9a4b9addd25c467cea69817e0588cf1242669c35f9fedf",
    "outages.csv": "0a47436bbe9414abd79c8d22ac0bf9c8559cb82d7cf07a94736d78b410478b05",
    "services.csv": "aec8eea130cd76ac76216fa7f17aa24843e3deb88673061ad4ce764a5eeb7884",
    "sip_actions.csv": "aeb575c713e4ea2130f9ae906a2f1cfdd5c2fd740c73ce6478fb27d1e235d711",
    "surveys.csv": "d7900c6c5dc77148047b61d5ef32ee80d229fca5b45f33ffe83d4a7abb21f1bb",
    "ticket_events.csv": "6f74589f0806172043198211cbb97a744c782fd4e3f9d6c5f0c78433133b8040",
    "tickets.csv": "2db7e4350e2854f0035d4a56dbfd59b0927afd78c1c0563bb01c411b4d4999e5",
}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_profile_s_is_the_demo_byte_for_byte(history: Path, tmp_path: Path) -> None:
    assert {p.name: _sha256(p) for p in sorted(history.glob("*.csv"))} == DEMO_SHA256
    assert cli.main(["demo", "generate", "--profile", "s", "--out", str(tmp_path / "s")]) == 0
    assert {p.name: _sha256(p) for p in sorted((tmp_path / "s").glob("*.csv"))} == DEMO_SHA256
    assert not (tmp_path / "s" / "contracts.yaml").exists()  # the demo uses the configured catalogue
    with pytest.raises(ValueError):
        demo_data.generate_profile(tmp_path / "x", "s", days=2)


@pytest.fixture(scope="module")
def m_drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Two days of the m profile (50 clients, 500 services, 1-minute checks)."""
    out = tmp_path_factory.mktemp("m2")
    counts = demo_data.generate_profile(out, "m", start=date(2026, 10, 1), days=2)
    return out, counts


def test_profile_m_is_canonical_and_at_its_scale(m_drop) -> None:
    out, counts = m_drop
    prof = demo_data.PROFILES["m"]
    assert counts["clients"] == 50 and counts["services"] == 500
    assert counts["checks"] == 2 * prof.checks_per_day() == 2 * 500 * 1440
    per_day = prof.tickets_per_year() / 365
    assert 0.7 * 2 * per_day < counts["tickets"] < 1.6 * 2 * per_day, counts  # Oct 1-2 2026: weekdays
    assert counts["surveys"] > 0.05 * counts["tickets"]
    for name, spec in ENTITY_BY_NAME.items():
        with open(out / f"{name}.csv", newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            assert next(reader) == list(spec.column_names), name
            idx = [spec.column_names.index(k) for k in spec.key]
            keys, n = set(), 0
            for row in reader:
                n += 1
                keys.add(tuple(row[i] for i in idx))
            assert n == len(keys) == counts[name], name
    tickets = read(out / "tickets.csv")
    by_id = {t["ticket_id"]: t for t in tickets}
    assert all(t["parent_ticket_id"] in by_id for t in tickets if t["parent_ticket_id"])
    assert {t["opened_at"][:10] for t in tickets} >= {"2026-10-01", "2026-10-02"}
    services = {s["service_code"]: s for s in read(out / "services.csv")}
    assert all(services[t["service_code"]]["client_code"] == t["client_code"] for t in tickets)
    # Every outage shows as down checks, one a minute.
    downs = Counter()
    with open(out / "checks.csv", newline="", encoding="utf-8") as fh:
        for c in csv.DictReader(fh):
            if c["status"] == "down":
                downs[c["service_code"]] += 1
    for o in read(out / "outages.csv"):
        assert downs[o["service_code"]] >= 1, o


def test_profile_m_days_do_not_depend_on_the_window(m_drop, tmp_path: Path) -> None:
    """A day's rows come from that day's streams: day 2 alone is a drop of its own (the nightly increment),
    and day 1 alone has the same checks as the first day of the two-day window."""
    out, _ = m_drop
    demo_data.generate_profile(tmp_path / "d1", "m", start=date(2026, 10, 1), days=1)
    demo_data.generate_profile(tmp_path / "d2", "m", start=date(2026, 10, 2), days=1)
    one = (tmp_path / "d1" / "checks.csv").read_bytes()
    two = (tmp_path / "d2" / "checks.csv").read_bytes()
    assert (out / "checks.csv").read_bytes() == one + two.split(b"\n", 1)[1]
    ids1 = {t["ticket_id"] for t in read(tmp_path / "d1" / "tickets.csv")}
    ids2 = {t["ticket_id"] for t in read(tmp_path / "d2" / "tickets.csv")}
    assert not ids1 & ids2 and ids1 | ids2 == {t["ticket_id"] for t in read(out / "tickets.csv")}


def test_profile_memory_stays_flat(tmp_path: Path) -> None:
    """Peak resident memory of the generator (a child process each) does not grow with the window."""
    import subprocess
    import sys

    def peak_kb(days: int) -> int:
        code = (
            "import resource, sys; from datetime import date; "
            "from slm_platform.sources.demo_data import generate_profile; "
            f"generate_profile(sys.argv[1], 'm', start=date(2026, 10, 1), days={days}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / str(days))],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.split()[-1])

    one, four = peak_kb(1), peak_kb(4)
    assert four < one * 1.25 + 10_000, (one, four)  # kB: 4x the rows, not 4x the memory


def test_profile_m_loads_without_quarantine_and_its_catalogue_loads(fresh_db: str, tmp_path: Path) -> None:
    from slm_platform.contracts.load import load_contracts

    out = tmp_path / "m1"
    assert cli.main(["demo", "generate", "--profile", "m", "--days", "1", "--start", "2026-10-01",
                     "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    counts = {p.stem: sum(1 for _ in open(p, encoding="utf-8")) - 1 for p in out.glob("*.csv")}
    results = load_drop(fresh_db, out)
    assert {r.entity: (r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results} == {
        name: (n, n, 0) for name, n in counts.items() if n
    } | {name: (0, 0, 0) for name, n in counts.items() if not n and name in {r.entity for r in results}}
    written = load_contracts(fresh_db, out / "contracts.yaml")
    assert written and all(n > 0 for n in written.values()), written
    assert cli.main(["demo", "generate", "--profile", "s", "--days", "1", "--out", str(tmp_path / "x")]) != 0
