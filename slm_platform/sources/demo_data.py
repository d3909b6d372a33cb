"""Deterministic demo drop in the canonical format: three clients, their services, months of tickets with
their history, 5-minute availability checks with outages, maintenance, surveys and SIP actions.

Same seed and arguments => byte-identical files. Every timestamp carries an offset: ITSM data is written in
the client's zone (so DST shows up as +01:00/+02:00), monitoring data in UTC (``Z``).

The demo (``./slm demo generate``, ``./slm demo up``) covers ``DEMO_MONTHS`` months ending with the month
before the
demo date (``demo_window``), so reviews have trends and previous periods to compare with; ``generate``
itself defaults to one month (October 2026), the small drop the tests build marts from.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from slm_platform.canonical import ENTITY_BY_NAME

CHECK_INTERVAL = timedelta(minutes=5)


@dataclass(frozen=True)
class Client:
    code: str
    name: str
    tz: str
    country: str
    weight: float  # share of the ticket volume


@dataclass(frozen=True)
class Service:
    code: str
    client: str
    name: str
    calendar: str
    criticality: str
    monitored: bool  # has 5-minute checks
    categories: tuple[str, ...]


CLIENTS = (
    Client("ACME", "ACME Europe", "Europe/Paris", "FR", 0.45),
    Client("GLOBEX", "Globex Corporation", "America/New_York", "US", 0.30),
    Client("INITECH", "Initech GmbH", "Europe/Berlin", "DE", 0.25),
)
SERVICES = (
    Service("ACME-ERP", "ACME", "ERP", "FR-BUSINESS", "high", True, ("application", "access", "performance")),
    Service("ACME-WEB", "ACME", "Web shop", "24x7", "critical", True, ("application", "network", "payment")),
    Service(
        "ACME-MAIL", "ACME", "Mail and collaboration", "FR-BUSINESS", "medium", False, ("access", "mailbox")
    ),
    Service("GLOBEX-CRM", "GLOBEX", "CRM", "US-BUSINESS", "high", False, ("application", "access", "data")),
    Service(
        "GLOBEX-PORTAL", "GLOBEX", "Customer portal", "24x7", "critical", True, ("application", "network")
    ),
    Service(
        "INITECH-SAP", "INITECH", "SAP", "DE-BUSINESS", "high", False, ("application", "access", "batch")
    ),
    Service("INITECH-NET", "INITECH", "WAN and sites", "24x7", "critical", True, ("network", "hardware")),
    Service("INITECH-HR", "INITECH", "HR portal", "DE-BUSINESS", "low", False, ("access", "application")),
)
TYPE_PREFIX = {"incident": "INC", "request": "REQ", "complaint": "CMP", "problem": "PRB", "change": "CHG"}
TYPE_WEIGHTS = {"incident": 60, "request": 25, "complaint": 5, "problem": 4, "change": 6}
PRIORITY_WEIGHTS = {
    "incident": {"P1": 3, "P2": 15, "P3": 47, "P4": 35},
    "request": {"P2": 3, "P3": 37, "P4": 60},
    "complaint": {"P2": 20, "P3": 80},
    "problem": {"P2": 40, "P3": 60},
    "change": {"P2": 10, "P3": 70, "P4": 20},
}
# Log-normal medians in minutes: (first response, work to resolve).
TIMES = {"P1": (7, 110), "P2": (25, 300), "P3": (70, 1300), "P4": (200, 3500)}
RESOLVER_GROUPS = {"network": ("Network", "Carrier-X"), "hardware": ("Field-Services",)}
OWNERS = ("Claire Martin", "Tom Becker", "Sarah Cohen", "Luis Ortega", "Ana Kowalski")
COMMENTS = (
    "Quick and friendly.",
    "Took too long to get an answer.",
    "Solved at the first call.",
    "I had to chase the team twice.",
    "Clear communication, thanks.",
)
# Surveys and complaints draw their extra details from a stream of their own, so that adding them left every
# other generated value (tickets, checks, ...) unchanged.
CSAT_WEIGHTS = {"fast": [3, 5, 11, 36, 45], "slow": [25, 25, 20, 18, 12]}  # 1..5; late tickets score lower
# What a client perceives as late, in minutes (P1 round the clock, others in weekday office hours 08-18
# local): about the demo contracts' response and resolution targets, so that late tickets are mostly the
# ones the SLA marts find breached (the generator itself knows nothing of contracts).
LATE_RESPONSE = {"P1": 15, "P2": 30, "P3": 120, "P4": 480}
LATE_RESOLUTION = {"P1": 240, "P2": 480, "P3": 1440, "P4": 2880}
COMPLAINT_CATEGORIES = {
    "linked": ("response time", "resolution quality", "communication"),
    "unlinked": ("communication", "billing", "service quality"),
}
REVIEW_COMMENTS = (
    "Figures match what our users felt this month.",
    "Response times improved; keep the weekly status mail.",
    "Too many repeat incidents on the same service.",
    "Good month overall, the outage handling was clear.",
    "We expect the root-cause actions to be closed faster.",
)
NPS_COMMENTS = (
    "Reliable partner.",
    "Support is good but changes take too long.",
    "Would recommend for the service desk alone.",
    "Pricing is hard to follow.",
)
COMPLAINT_LOOKBACK = timedelta(days=14)
# The demo's run date (the nightly of that day covers the day before) and how much history it gets.
DEMO_DATE = date(2026, 11, 1)
DEMO_MONTHS = 13
# History details (long monitoring gaps, slow SIP actions) draw from streams of their own, one per month for
# the gaps, so that they left every other generated value unchanged.
LONG_GAP_SHARE = 0.5  # share of months in which one monitored service loses its probe for hours
LONG_GAP_HOURS = (8, 36)  # over 1 % of a month: the review's coverage threshold (99 %) is crossed
SLOW_ACTION_DAYS = (31, 150)  # an action not closed within its usual 2-20 days closes 1-5 months later ...
FORGOTTEN_ACTION_SHARE = 0.15  # ... or never


def _ts(dt: datetime, tz: str | None = None) -> str:
    """ISO-8601 with offset: in the given zone, or UTC written as Z."""
    if tz is None:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.astimezone(ZoneInfo(tz)).isoformat(timespec="seconds")


def _pick(rnd: random.Random, weights: dict[str, float]) -> str:
    return rnd.choices(list(weights), weights=list(weights.values()))[0]


def _add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, 1)


def demo_window(demo_date: date = DEMO_DATE, months: int = DEMO_MONTHS) -> tuple[date, int]:
    """(start, months) of the demo history: ``months`` whole months ending with the month before
    ``demo_date`` (2026-11-01 -> October 2025 .. October 2026)."""
    if months < 1:
        raise ValueError("months must be >= 1")
    return _add_months(demo_date.replace(day=1), -months), months


@dataclass
class _Ticket:
    ticket_id: str
    client: Client
    service: Service
    ticket_type: str
    priority: str
    opened: datetime
    is_major: bool = False
    parent: str | None = None
    category: str = ""
    events: list[tuple[datetime, str, str | None, str]] = field(default_factory=list)
    first_response: datetime | None = None
    resolved: datetime | None = None
    closed: datetime | None = None


def _office_minutes(t: _Ticket, until: datetime) -> float:
    """Minutes from opening to ``until``: real ones for P1, else weekday 08:00-18:00 in the client's zone."""
    if t.priority == "P1":
        return (until - t.opened).total_seconds() / 60
    tz = ZoneInfo(t.client.tz)
    start, end = t.opened.astimezone(tz), until.astimezone(tz)
    total, day = 0.0, start.date()
    while day <= end.date():
        if day.weekday() < 5:
            lo = datetime(day.year, day.month, day.day, 8, tzinfo=tz)
            hi = datetime(day.year, day.month, day.day, 18, tzinfo=tz)
            overlap = min(hi, end) - max(lo, start)
            total += max(overlap.total_seconds(), 0) / 60
        day += timedelta(days=1)
    return total


@dataclass
class _Drop:
    rows: dict[str, list[list[object]]] = field(default_factory=lambda: {n: [] for n in ENTITY_BY_NAME})


class _Generator:
    def __init__(self, seed: int, start: date, months: int):
        self.rnd = random.Random(seed)
        self.start = datetime(start.year, start.month, 1, tzinfo=UTC)
        self.months = months
        self.end = datetime.combine(_add_months(start.replace(day=1), months), datetime.min.time(), UTC)
        self.drop = _Drop()
        self.n_ticket = 0
        self.n_survey = 0
        self.n_action = 0
        self.id_tag = ""  # the larger profiles number ids per day (see _ScaledGenerator); the demo does not
        self.clients = {c.code: c for c in CLIENTS}
        self.rnd_feedback = random.Random(f"feedback-{seed}")
        self.rnd_actions = random.Random(f"actions-{seed}")
        self.seed = seed

    # -- helpers ---------------------------------------------------------------------------------------
    def _local_time(self, client: Client, month_start: date, business: bool) -> datetime:
        """A random moment of the month, in business hours of the client's zone when asked."""
        days = (_add_months(month_start, 1) - month_start).days
        tz = ZoneInfo(client.tz)
        while True:
            day = month_start + timedelta(days=self.rnd.randrange(days))
            if business and day.weekday() >= 5:
                continue
            minute = self.rnd.randrange(8 * 60, 18 * 60) if business else self.rnd.randrange(24 * 60)
            local = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
            utc = local.astimezone(UTC)
            if self.start <= utc < self.end:
                return utc

    def _minutes(self, median: float, sigma: float = 0.8) -> timedelta:
        return timedelta(minutes=max(1, round(self.rnd.lognormvariate(0, sigma) * median)))

    def _new_ticket(
        self, client: Client, service: Service, ttype: str, prio: str, opened: datetime
    ) -> _Ticket:
        self.n_ticket += 1
        return _Ticket(
            f"{TYPE_PREFIX[ttype]}{self.id_tag}{self.n_ticket:07d}",
            client,
            service,
            ttype,
            prio,
            opened,
            category=self.rnd.choice(service.categories),
        )

    # -- tickets ---------------------------------------------------------------------------------------
    def _lifecycle(self, t: _Ticket, resolve_after: timedelta | None = None) -> None:
        """Events from opening to closure: response, reassignments, customer pauses, resolution."""
        rnd = self.rnd
        resp_median, work_median = TIMES[t.priority]
        if t.ticket_type in ("request", "change"):
            work_median *= 1.5
        ev = t.events
        ev.append((t.opened, "status", None, "new"))
        ev.append((t.opened, "assignment_group", None, "ServiceDesk"))
        now = t.opened + self._minutes(resp_median)
        t.first_response = now
        ev.append((now, "status", "new", "in_progress"))
        group = "ServiceDesk"
        if t.ticket_type == "incident" and t.priority in ("P3", "P4") and rnd.random() < 0.08:
            now += timedelta(minutes=rnd.randrange(5, 120))
            new_prio = "P2" if t.priority == "P3" else "P3"
            ev.append((now, "priority", t.priority, new_prio))
            t.priority = new_prio
        work = resolve_after if resolve_after is not None else self._minutes(work_median, 0.9)
        if t.ticket_type == "incident" and rnd.random() < 0.45:
            resolvers = RESOLVER_GROUPS.get(t.category, ("Application",))
            now += timedelta(minutes=rnd.randrange(3, 30))
            nxt = resolvers[0]
            ev.append((now, "assignment_group", group, nxt))
            group = nxt
            if len(resolvers) > 1 and rnd.random() < 0.5:
                now += work / 3
                ev.append((now, "assignment_group", group, resolvers[1]))
                group = resolvers[1]
        if t.priority != "P1" and rnd.random() < 0.22:
            pause_at = now + work / 2
            pause = timedelta(minutes=rnd.randrange(30, 24 * 60))
            ev.append((pause_at, "status", "in_progress", "pending_customer"))
            ev.append((pause_at + pause, "status", "pending_customer", "in_progress"))
            work += pause
        resolved = t.opened + max(work, now - t.opened + timedelta(minutes=1))
        if resolved <= max(e[0] for e in ev):
            resolved = max(e[0] for e in ev) + timedelta(minutes=1)
        ev.append((resolved, "status", "in_progress", "resolved"))
        t.resolved = resolved
        t.closed = resolved + timedelta(days=2, minutes=rnd.randrange(0, 600))
        ev.append((t.closed, "status", "resolved", "closed"))

    def _emit_ticket(self, t: _Ticket) -> None:
        """Write the ticket as seen at the end of the period: later events have not happened yet."""
        seen = sorted((e for e in t.events if e[0] < self.end), key=lambda e: (e[0], e[1]))
        status = [e for e in seen if e[1] == "status"][-1][3]
        group = [e for e in seen if e[1] == "assignment_group"][-1][3]
        changes = [e for e in t.events if e[1] == "priority"]  # t.priority is the final one
        seen_changes = [e for e in seen if e[1] == "priority"]
        priority = seen_changes[-1][3] if seen_changes else (changes[0][2] if changes else t.priority)
        tz = t.client.tz

        def at(dt: datetime | None) -> str:
            return _ts(dt, tz) if dt is not None and dt < self.end else ""

        self.drop.rows["tickets"].append(
            [
                t.ticket_id,
                t.client.code,
                t.service.code,
                t.ticket_type,
                priority,
                at(t.opened),
                at(t.first_response),
                at(t.resolved),
                at(t.closed),
                status,
                group,
                "true" if t.is_major else "false",
                t.parent or "",
                t.category,
                at(seen[-1][0]),
            ]
        )
        for when, fld, old, new in seen:
            self.drop.rows["ticket_events"].append([t.ticket_id, _ts(when, tz), fld, old or "", new])

    def _month_tickets(self, month: date, outages: list[tuple[Service, datetime, datetime]]) -> list[_Ticket]:
        rnd = self.rnd
        tickets: list[_Ticket] = []
        weights = {c.code: c.weight for c in CLIENTS}
        for _ in range(rnd.randint(380, 520)):
            client = self.clients[_pick(rnd, weights)]
            services = [s for s in SERVICES if s.client == client.code]
            service = rnd.choices(
                services, weights=[3 if s.criticality in ("critical", "high") else 1 for s in services]
            )[0]
            ttype = _pick(rnd, TYPE_WEIGHTS)
            prio = _pick(rnd, PRIORITY_WEIGHTS[ttype])
            opened = self._local_time(client, month, business=rnd.random() < 0.75)
            t = self._new_ticket(client, service, ttype, prio, opened)
            t.is_major = prio == "P1" and rnd.random() < 0.5
            self._lifecycle(t)
            tickets.append(t)
        tickets.extend(self._outage_incidents(outages))
        return tickets

    def _outage_incidents(self, outages: list) -> Iterator[_Ticket]:
        """Each outage of a monitored service is a major P1 incident, with a few child incidents; each
        ticket is yielded once its lifecycle is drawn (the caller's own draws for it come before the next)."""
        rnd = self.rnd
        for service, start, end in outages:
            client = self.clients[service.client]
            major = self._new_ticket(
                client, service, "incident", "P1", start + timedelta(minutes=rnd.randrange(2, 9))
            )
            major.is_major = True
            self._lifecycle(major, resolve_after=end - major.opened + timedelta(minutes=rnd.randrange(5, 40)))
            yield major
            for _ in range(rnd.randint(1, 3)):
                child = self._new_ticket(
                    client, service, "incident", "P2", major.opened + timedelta(minutes=rnd.randrange(3, 30))
                )
                child.parent = major.ticket_id
                self._lifecycle(child, resolve_after=major.resolved - child.opened + timedelta(minutes=5))
                yield child

    def _link_complaints(self, tickets: list[_Ticket]) -> None:
        """Most complaints are about an earlier ticket of the same client (parent_ticket_id), preferably of
        the same service; their category says what the complaint is about."""
        rnd = self.rnd_feedback
        for c in tickets:
            if c.ticket_type != "complaint":
                continue
            earlier = [
                t
                for t in tickets
                if t.ticket_type in ("incident", "request")
                and t.client is c.client
                and c.opened - COMPLAINT_LOOKBACK <= t.opened < c.opened
            ]
            same_service = [t for t in earlier if t.service is c.service]
            if earlier and rnd.random() < 0.7:
                parent = rnd.choice(same_service or earlier)
                c.parent = parent.ticket_id
                c.category = rnd.choice(COMPLAINT_CATEGORIES["linked"])
            else:
                c.category = rnd.choice(COMPLAINT_CATEGORIES["unlinked"])

    # -- monitoring ------------------------------------------------------------------------------------
    def _month_monitoring(self, month: date) -> list[tuple[Service, datetime, datetime]]:
        rnd = self.rnd
        month_start = datetime(month.year, month.month, 1, tzinfo=UTC)
        month_end = datetime.combine(_add_months(month, 1), datetime.min.time(), UTC)
        monitored = [s for s in SERVICES if s.monitored]
        outages = []
        for _ in range(rnd.randint(2, 4)):
            service = rnd.choice(monitored)
            start = month_start + timedelta(
                minutes=5 * rnd.randrange(12, (month_end - month_start).days * 288 - 48)
            )
            outages.append((service, start, start + timedelta(minutes=rnd.randrange(10, 150))))
        outages.sort(key=lambda o: (o[1], o[0].code))
        maintenance = []
        for service in monitored:  # one approved window on a Sunday night, local time
            client = self.clients[service.client]
            tz = ZoneInfo(client.tz)
            sundays = [
                d
                for d in (month + timedelta(days=i) for i in range((_add_months(month, 1) - month).days))
                if d.weekday() == 6
            ]
            day = rnd.choice(sundays)
            start = datetime(day.year, day.month, day.day, 2, 0, tzinfo=tz).astimezone(UTC)
            maintenance.append((service, start, start + timedelta(hours=2), True))
        extra = rnd.choice(monitored)  # one requested but not approved window
        day = month + timedelta(days=rnd.randrange(3, 25))
        start = datetime(day.year, day.month, day.day, 22, 0, tzinfo=ZoneInfo(self.clients[extra.client].tz))
        maintenance.append((extra, start.astimezone(UTC), start.astimezone(UTC) + timedelta(hours=1), False))
        for service, start, end, approved in maintenance:
            ref = f"CHG-{service.code}-{start.astimezone(UTC):%Y%m%d}"
            tz = self.clients[service.client].tz
            self.drop.rows["maintenance"].append(
                [service.code, _ts(start, tz), _ts(end, tz), ref, "true" if approved else "false"]
            )
        for service, start, end in outages:
            self.drop.rows["outages"].append(
                [service.code, _ts(start), _ts(end), f"ALERT-{rnd.randrange(10**6):06d}"]
            )
        # A monitoring gap (unmeasured time) on one service: 70 minutes without checks.
        gap_service = rnd.choice(monitored)
        gap_start = month_start + timedelta(minutes=5 * rnd.randrange(100, 8000))
        gap_end = gap_start + timedelta(minutes=70)
        long_gap = self._long_gap(month, month_start, month_end, monitored, outages)
        for service in monitored:
            down = [(s, e) for svc, s, e in outages if svc is service]
            # Part of each approved maintenance window is down (and must not count as downtime).
            down += [
                (s, s + timedelta(minutes=20)) for svc, s, _e, ok in maintenance if svc is service and ok
            ]
            t = month_start
            rows = self.drop.rows["checks"]
            while t < month_end:
                if not (service is gap_service and gap_start <= t < gap_end):
                    is_down = any(s <= t < e for s, e in down)
                    latency = "" if is_down else str(int(self.rnd.lognormvariate(0, 0.35) * 120))
                    # A check lost in a long gap still drew its latency: the main stream stays as it was.
                    if not (long_gap and service is long_gap[0] and long_gap[1] <= t < long_gap[2]):
                        rows.append([service.code, _ts(t), "down" if is_down else "up", latency])
                t += CHECK_INTERVAL
        return outages

    def _long_gap(
        self,
        month: date,
        month_start: datetime,
        month_end: datetime,
        monitored: list[Service],
        outages: list[tuple[Service, datetime, datetime]],
    ) -> tuple[Service, datetime, datetime] | None:
        """In some months a probe is lost for hours (the service's coverage drops below 99 %); never over
        an outage of that service, whose down checks must stay visible."""
        rnd = random.Random(f"history-{self.seed}-{month:%Y-%m}")
        if rnd.random() >= LONG_GAP_SHARE:
            return None
        service = rnd.choice(monitored)
        length = timedelta(hours=rnd.randint(*LONG_GAP_HOURS))
        steps = int((month_end - month_start - length) / CHECK_INTERVAL)
        for _ in range(20):
            start = month_start + CHECK_INTERVAL * rnd.randrange(steps)
            if not any(svc is service and s < start + length and start < e for svc, s, e in outages):
                return service, start, start + length
        return None

    # -- satisfaction and improvement --------------------------------------------------------------------
    def _survey(
        self, client: Client, stype: str, sent: datetime, answered: datetime | None, **scores
    ) -> None:
        self.n_survey += 1
        self.drop.rows["surveys"].append(
            [
                f"SRV{self.id_tag}{self.n_survey:06d}",
                client.code,
                stype,
                scores.get("ticket_id", ""),
                scores.get("service_code", ""),
                _ts(sent, client.tz),
                _ts(answered, client.tz) if answered and answered < self.end else "",
                scores.get("csat", "") if answered and answered < self.end else "",
                scores.get("nps", "") if answered and answered < self.end else "",
                scores.get("ces", "") if answered and answered < self.end else "",
                scores.get("comment", "") if answered and answered < self.end else "",
            ]
        )

    def _month_feedback(self, month: date, tickets: list[_Ticket]) -> None:
        rnd = self.rnd
        for t in tickets:
            if t.ticket_type not in ("incident", "request") or not t.resolved or t.resolved >= self.end:
                continue
            if rnd.random() >= 0.35:
                continue
            sent = t.resolved + timedelta(minutes=30)
            if sent >= self.end:
                continue
            answered = (
                sent + timedelta(minutes=rnd.randrange(10, 3 * 24 * 60)) if rnd.random() < 0.45 else None
            )
            # One draw either way (the main stream stays as it was); a late ticket draws from lower weights.
            late = (
                _office_minutes(t, t.first_response) > LATE_RESPONSE[t.priority]
                or _office_minutes(t, t.resolved) > LATE_RESOLUTION[t.priority]
            )
            csat = rnd.choices([1, 2, 3, 4, 5], weights=CSAT_WEIGHTS["slow" if late else "fast"])[0]
            self._survey(
                t.client,
                "transactional",
                sent,
                answered,
                ticket_id=t.ticket_id,
                service_code=t.service.code,
                csat=csat,
                ces=rnd.randint(1, 7),
                comment=rnd.choice(COMMENTS) if rnd.random() < 0.3 else "",
            )
        for client in CLIENTS:
            tz = ZoneInfo(client.tz)
            sent = datetime(month.year, month.month, 15, 10, 0, tzinfo=tz)
            for _ in range(8):
                answered = sent + timedelta(hours=rnd.randrange(1, 200)) if rnd.random() < 0.7 else None
                nps = rnd.choices(range(11), weights=[1, 1, 1, 2, 2, 3, 4, 8, 12, 14, 10])[0]
                comment = self.rnd_feedback.choice(NPS_COMMENTS) if self.rnd_feedback.random() < 0.4 else ""
                self._survey(client, "relationship", sent, answered, nps=nps, comment=comment)
            review = datetime(month.year, month.month, 20, 14, 0, tzinfo=tz)
            self._survey(
                client,
                "review",
                review,
                review + timedelta(hours=2),
                csat=rnd.choice([3, 4, 4, 5]),
                comment=self.rnd_feedback.choice(REVIEW_COMMENTS),
            )
            self._action(
                client,
                "review",
                f"REVIEW-{client.code}-{month:%Y-%m}",
                "Act on service review findings",
                review + timedelta(hours=3),
            )
        for t in tickets:
            if t.is_major and t.resolved and t.resolved < self.end:
                self._action(
                    t.client,
                    "incident",
                    t.ticket_id,
                    f"Root cause and prevention for {t.ticket_id}",
                    t.resolved + timedelta(days=1),
                )

    def _action(self, client: Client, source_type: str, ref: str, title: str, opened: datetime) -> None:
        if opened >= self.end:
            return
        rnd = self.rnd
        self.n_action += 1
        due = (opened + timedelta(days=rnd.choice([7, 14, 30]))).date()
        closed = opened + timedelta(days=rnd.randrange(2, 20))
        if closed < self.end and rnd.random() < 0.8:
            status = "done" if rnd.random() < 0.9 else "cancelled"
        else:
            # Not closed in the usual time: a slow action, closed one to five months later, or forgotten. In a
            # one-month drop none closes before its end; with history they make the overdue register.
            slow = opened + timedelta(days=self.rnd_actions.randrange(*SLOW_ACTION_DAYS))
            if slow < self.end and self.rnd_actions.random() >= FORGOTTEN_ACTION_SHARE:
                status, closed = "done", slow
            else:
                status, closed = "open", None
        self.drop.rows["sip_actions"].append(
            [
                f"SIP{self.id_tag}{self.n_action:05d}",
                client.code,
                source_type,
                ref,
                title,
                rnd.choice(OWNERS),
                _ts(opened, client.tz),
                due.isoformat(),
                status,
                _ts(closed, client.tz) if closed else "",
            ]
        )

    def run(self) -> _Drop:
        for c in CLIENTS:
            self.drop.rows["clients"].append([c.code, c.name, c.tz, c.country])
        for s in SERVICES:
            self.drop.rows["services"].append([s.code, s.client, s.name, s.calendar, s.criticality])
        for i in range(self.months):
            month = _add_months(self.start.date(), i)
            outages = self._month_monitoring(month)
            tickets = self._month_tickets(month, outages)
            self._link_complaints(tickets)
            for t in sorted(tickets, key=lambda t: t.ticket_id):
                self._emit_ticket(t)
            self._month_feedback(month, tickets)
        return self.drop


def _write_csv(path: Path, header: Iterable[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def generate(
    out_dir: Path,
    seed: int = 42,
    start: date = date(2026, 10, 1),
    months: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write the demo drop (one CSV per canonical file) into ``out_dir``; returns rows per file."""
    if months < 1:
        raise ValueError("months must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drop = _Generator(seed, start, months).run()
    counts = {}
    for name, spec in ENTITY_BY_NAME.items():
        rows = drop.rows[name]
        key_idx = [spec.column_names.index(k) for k in spec.key]
        rows.sort(key=lambda r: tuple(str(r[i]) for i in key_idx))
        _write_csv(out_dir / f"{name}.csv", spec.column_names, rows)
        counts[name] = len(rows)
        if log:
            log(f"{name}.csv: {len(rows)} rows")
    return counts


# ------------------------------------------------------------------------------------ the larger profiles
#
# ``s`` is the demo above (3 clients, 8 services, 5-minute checks), generated in memory and sorted as it
# always was: its bytes do not change. ``m`` and ``l`` are synthetic portfolios with 1-minute checks on every
# service, written streaming, day by day, each day from random streams of its own (seeded by the day): memory
# holds one day's tickets, and a day's rows do not depend on the window around it (a later day is a separate
# drop with ids of its own: ticket, survey and action ids carry the day, ``INC261001000001``). Tickets are
# written as seen at the end of the window, like the demo's.


@dataclass(frozen=True)
class Profile:
    name: str
    clients: int
    services_per_client: int
    check_interval: timedelta
    tickets_per_client_month: int  # mean; weekdays get more than weekends
    default_months: int

    @property
    def services(self) -> int:
        return self.clients * self.services_per_client

    def checks_per_day(self) -> int:
        return self.services * int(timedelta(days=1) / self.check_interval)

    def tickets_per_year(self) -> int:
        return self.clients * self.tickets_per_client_month * 12


PROFILES = {
    "s": Profile("s", len(CLIENTS), 0, CHECK_INTERVAL, 150, DEMO_MONTHS),  # the demo (its own tables above)
    "m": Profile("m", 50, 10, timedelta(minutes=1), 833, 1),
    "l": Profile("l", 500, 10, timedelta(minutes=1), 833, 1),  # 5,000 services, about 5 M tickets a year
}
# Synthetic clients take the zone, country and business calendar of one of the demo's three (the catalogue
# the drop brings has these calendars).
_REGIONS = (
    ("Europe/Paris", "FR", "FR-BUSINESS"),
    ("America/New_York", "US", "US-BUSINESS"),
    ("Europe/Berlin", "DE", "DE-BUSINESS"),
)
_SERVICE_KINDS = (
    ("ERP", "high", ("application", "access", "performance")),
    ("Web shop", "critical", ("application", "network", "payment")),
    ("Mail", "medium", ("access", "mailbox")),
    ("CRM", "high", ("application", "access", "data")),
    ("Portal", "critical", ("application", "network")),
    ("WAN", "critical", ("network", "hardware")),
    ("HR portal", "low", ("access", "application")),
    ("Data platform", "high", ("application", "data", "batch")),
)


def scaled_portfolio(profile: Profile) -> tuple[list[Client], list[Service]]:
    """The profile's clients (C0001 ...) and services (C0001-S01 ...), all monitored."""
    clients, services = [], []
    for i in range(1, profile.clients + 1):
        tz, country, calendar = _REGIONS[i % len(_REGIONS)]
        client = Client(f"C{i:04d}", f"Client {i:04d}", tz, country, 1.0)
        clients.append(client)
        for j in range(1, profile.services_per_client + 1):
            name, crit, cats = _SERVICE_KINDS[(i + j) % len(_SERVICE_KINDS)]
            cal = "24x7" if crit == "critical" else calendar
            services.append(Service(f"{client.code}-S{j:02d}", client.code, name, cal, crit, True, cats))
    return clients, services


def scaled_catalogue(clients: list[Client], services: list[Service]) -> dict:
    """The contract catalogue the m/l drops bring (contracts.yaml): the demo's calendars and one SLA per
    client over its services, with the demo's ticket, availability and CSAT objectives on its calendar."""
    import yaml

    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "contracts" / "catalogue.yaml").read_text())
    by_client: dict[str, list[str]] = {}
    for s in services:
        by_client.setdefault(s.client, []).append(s.code)
    agreements = []
    for c in clients:
        calendar = next(cal for tz, _country, cal in _REGIONS if tz == c.tz)
        objectives: list[dict] = []
        for metric, targets in (("response", LATE_RESPONSE), ("resolution", LATE_RESOLUTION)):
            for prio, minutes in targets.items():
                objectives.append(
                    {
                        "metric": metric,
                        "ticket_type": "incident",
                        "priority": prio,
                        "target_minutes": minutes,
                        "calendar": "24x7" if prio == "P1" else calendar,
                        "threshold_pct": 95 if prio in ("P1", "P2") else 90,
                    }
                )
        objectives.append(
            {"metric": "availability", "target_pct": 99.9, "calendar": "24x7", "period": "month"}
        )
        objectives.append({"metric": "csat", "target_pct": 85, "period": "quarter"})
        agreements.append(
            {
                "id": f"SLA-{c.code}",
                "kind": "SLA",
                "party": c.code,
                "valid_from": date(2025, 7, 1),
                "valid_to": None,
                "services": by_client[c.code],
                "pause_statuses": ["pending_customer"],
                "objectives": objectives,
            }
        )
    return {"calendars": demo["calendars"], "agreements": agreements}


class _Sink:
    """A canonical CSV written as rows come (``append``, like the demo's lists): nothing is kept."""

    def __init__(self, path: Path, header: Iterable[str]):
        self.fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.writer = csv.writer(self.fh, lineterminator="\n")
        self.writer.writerow(header)
        self.count = 0

    def append(self, row: list[object]) -> None:
        self.writer.writerow(row)
        self.count += 1

    def close(self) -> None:
        self.fh.close()


class _ScaledGenerator(_Generator):
    def __init__(self, out_dir: Path, seed: int, profile: Profile, start: date, end: date):
        super().__init__(seed, start, 1)
        self.profile = profile
        self.start = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self.end = datetime(end.year, end.month, end.day, tzinfo=UTC)
        self.client_list, self.services = scaled_portfolio(profile)
        self.clients = {c.code: c for c in self.client_list}
        self.services_of = {
            c.code: [s for s in self.services if s.client == c.code] for c in self.client_list
        }
        self.out_dir = out_dir
        self.sinks = {n: _Sink(out_dir / f"{n}.csv", spec.column_names) for n, spec in ENTITY_BY_NAME.items()}
        self.drop = _Drop(rows=self.sinks)  # type: ignore[arg-type]  # the base class only appends
        self.recent: dict[str, list[tuple[datetime, str, Service]]] = {}  # per client: incidents/requests
        self._month_plan: tuple[date, dict] | None = None

    # -- a month's outages and maintenance, drawn once per month whatever the window ---------------------
    def _plan(self, month: date) -> dict:
        if self._month_plan and self._month_plan[0] == month:
            return self._month_plan[1]
        rnd = random.Random(f"{self.profile.name}-{self.seed}-month-{month:%Y-%m}")
        month_start = datetime(month.year, month.month, 1, tzinfo=UTC)
        days = (_add_months(month, 1) - month).days
        sundays = [
            month + timedelta(days=i) for i in range(days) if (month + timedelta(days=i)).weekday() == 6
        ]
        outages, maintenance = [], []
        for s in self.services:
            if rnd.random() < 0.5:  # about one outage per service every two months
                start = month_start + timedelta(minutes=rnd.randrange(60, days * 1440 - 240))
                outages.append((s, start, start + timedelta(minutes=rnd.randrange(10, 150))))
            day = rnd.choice(sundays)
            tz = ZoneInfo(self.clients[s.client].tz)
            m_start = datetime(day.year, day.month, day.day, 2, 0, tzinfo=tz).astimezone(UTC)
            maintenance.append((s, m_start, m_start + timedelta(hours=2), rnd.random() < 0.9))
        plan = {"outages": outages, "maintenance": maintenance}
        self._month_plan = (month, plan)
        return plan

    # -- one day ---------------------------------------------------------------------------------------
    def _day(self, day: date) -> None:
        month = day.replace(day=1)
        plan = self._plan(month)
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        day_end = day_start + timedelta(days=1)
        self.id_tag = f"{day:%y%m%d}"
        self.n_ticket = self.n_survey = self.n_action = 0
        self.rnd = random.Random(f"{self.profile.name}-{self.seed}-day-{day.isoformat()}")
        self.rnd_feedback = random.Random(f"{self.profile.name}-{self.seed}-feedback-{day.isoformat()}")
        self.rnd_actions = random.Random(f"{self.profile.name}-{self.seed}-actions-{day.isoformat()}")
        todays_outages = [o for o in plan["outages"] if day_start <= o[1] < day_end]
        for s, start, end in todays_outages:
            self.drop.rows["outages"].append(
                [s.code, _ts(start), _ts(end), f"ALERT-{s.code}-{start:%Y%m%d%H%M}"]
            )
        for s, start, end, ok in plan["maintenance"]:
            if day_start <= start < day_end:
                tz = self.clients[s.client].tz
                ref = f"CHG-{s.code}-{start:%Y%m%d}"
                self.drop.rows["maintenance"].append(
                    [s.code, _ts(start, tz), _ts(end, tz), ref, "true" if ok else "false"]
                )
        self._day_checks(day_start, plan)
        self._day_tickets(day, day_start, todays_outages)

    def _day_checks(self, day_start: datetime, plan: dict) -> None:
        step = self.profile.check_interval
        n = int(timedelta(days=1) / step)
        stamps = [_ts(day_start + i * step) for i in range(n)]
        down: dict[str, list[tuple[int, int]]] = {}
        day_end = day_start + timedelta(days=1)
        spans = [(s, a, b) for s, a, b in plan["outages"]]
        spans += [(s, a, a + timedelta(minutes=20)) for s, a, _b, ok in plan["maintenance"] if ok]
        for s, a, b in spans:
            if a < day_end and day_start < b:
                lo = max(0, -(-(a - day_start) // step))  # first check at or after a
                hi = min(n, -(-(b - day_start) // step))
                down.setdefault(s.code, []).append((lo, hi))
        rnd = random.Random(f"{self.profile.name}-{self.seed}-checks-{day_start:%Y-%m-%d}")
        lognorm = rnd.lognormvariate
        fh = self.sinks["checks"].fh
        for s in self.services:
            code = s.code
            is_down = bytearray(n)
            for lo, hi in down.get(code, ()):
                is_down[lo:hi] = b"\x01" * (hi - lo)
            fh.write(
                "".join(
                    f"{code},{ts},down,\n"
                    if is_down[i]
                    else f"{code},{ts},up,{int(lognorm(0, 0.35) * 120)}\n"
                    for i, ts in enumerate(stamps)
                )
            )
        self.sinks["checks"].count += n * len(self.services)

    def _day_tickets(self, day: date, day_start: datetime, outages: list) -> None:
        rnd = self.rnd
        p = self.profile
        mean = p.clients * p.tickets_per_client_month * 12 / 365 * (1.25 if day.weekday() < 5 else 0.4)
        for _ in range(max(0, round(rnd.gauss(mean, mean**0.5)))):
            client = self.client_list[rnd.randrange(len(self.client_list))]
            services = self.services_of[client.code]
            service = rnd.choices(
                services, weights=[3 if s.criticality in ("critical", "high") else 1 for s in services]
            )[0]
            ttype = _pick(rnd, TYPE_WEIGHTS)
            prio = _pick(rnd, PRIORITY_WEIGHTS[ttype])
            if rnd.random() < 0.75:  # office hours, local
                tz = ZoneInfo(client.tz)
                minute = rnd.randrange(8 * 60, 18 * 60)
                local = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
                opened = local.astimezone(UTC)
                if not (self.start <= opened < self.end):
                    opened = day_start + timedelta(minutes=minute)
            else:
                opened = day_start + timedelta(minutes=rnd.randrange(24 * 60))
            t = self._new_ticket(client, service, ttype, prio, opened)
            t.is_major = prio == "P1" and rnd.random() < 0.1
            self._lifecycle(t)
            self._finish(t)
        for t in self._outage_incidents(outages):
            self._finish(t)
        if day.day in (15, 20):
            self._monthly_surveys(day)

    def _finish(self, t: _Ticket) -> None:
        """Link a complaint to a recent ticket of its client, write the ticket, its survey and SIP action."""
        recent = self.recent.setdefault(t.client.code, [])
        if t.ticket_type == "complaint":
            rnd = self.rnd_feedback
            earlier = [r for r in recent if t.opened - COMPLAINT_LOOKBACK <= r[0] < t.opened]
            same = [r for r in earlier if r[2] is t.service]
            if earlier and rnd.random() < 0.7:
                t.parent = rnd.choice(same or earlier)[1]
                t.category = rnd.choice(COMPLAINT_CATEGORIES["linked"])
            else:
                t.category = rnd.choice(COMPLAINT_CATEGORIES["unlinked"])
        elif t.ticket_type in ("incident", "request"):
            recent.append((t.opened, t.ticket_id, t.service))
            if len(recent) > 400:
                del recent[:200]
        self._emit_ticket(t)
        # Every ticket draws the same values whatever the window's end (what is written depends on it, the
        # draws do not), so that a day's tickets are the same in any window that holds the day.
        rnd = self.rnd
        asked, wait, answers = rnd.random() < 0.35, rnd.randrange(10, 3 * 24 * 60), rnd.random() < 0.45
        slow = rnd.choices([1, 2, 3, 4, 5], weights=CSAT_WEIGHTS["slow"])[0]
        fast = rnd.choices([1, 2, 3, 4, 5], weights=CSAT_WEIGHTS["fast"])[0]
        ces, comment = rnd.randint(1, 7), rnd.choice(COMMENTS) if rnd.random() < 0.3 else ""
        resolved_in_window = t.resolved is not None and t.resolved < self.end
        if t.ticket_type in ("incident", "request") and resolved_in_window and asked:
            assert t.resolved is not None and t.first_response is not None
            sent = t.resolved + timedelta(minutes=30)
            if sent < self.end:
                late = (t.first_response - t.opened).total_seconds() / 60 > LATE_RESPONSE[t.priority] or (
                    t.resolved - t.opened
                ).total_seconds() / 60 > 1.4 * LATE_RESOLUTION[t.priority]  # wall time: no calendar walk
                self._survey(
                    t.client,
                    "transactional",
                    sent,
                    sent + timedelta(minutes=wait) if answers else None,
                    ticket_id=t.ticket_id,
                    service_code=t.service.code,
                    csat=slow if late else fast,
                    ces=ces,
                    comment=comment,
                )
        if t.is_major and resolved_in_window:
            assert t.resolved is not None
            title = f"Root cause and prevention for {t.ticket_id}"
            main, self.rnd = self.rnd, self.rnd_actions  # an action's draws depend on the window: own stream
            try:
                self._action(t.client, "incident", t.ticket_id, title, t.resolved + timedelta(days=1))
            finally:
                self.rnd = main

    def _monthly_surveys(self, day: date) -> None:
        rnd = self.rnd
        for client in self.client_list:
            tz = ZoneInfo(client.tz)
            if day.day == 15:
                sent = datetime(day.year, day.month, 15, 10, 0, tzinfo=tz)
                for _ in range(8):
                    answered = sent + timedelta(hours=rnd.randrange(1, 200)) if rnd.random() < 0.7 else None
                    nps = rnd.choices(range(11), weights=[1, 1, 1, 2, 2, 3, 4, 8, 12, 14, 10])[0]
                    comment = rnd.choice(NPS_COMMENTS) if rnd.random() < 0.4 else ""
                    self._survey(client, "relationship", sent, answered, nps=nps, comment=comment)
            else:
                review = datetime(day.year, day.month, 20, 14, 0, tzinfo=tz)
                answered = review + timedelta(hours=2)
                csat = rnd.choice([3, 4, 4, 5])
                self._survey(
                    client, "review", review, answered, csat=csat, comment=rnd.choice(REVIEW_COMMENTS)
                )
                title = "Act on service review findings"
                ref = f"REVIEW-{client.code}-{day:%Y-%m}"
                self._action(client, "review", ref, title, review + timedelta(hours=3))

    def write(self, progress: bool) -> dict[str, int]:
        for c in self.client_list:
            self.drop.rows["clients"].append([c.code, c.name, c.tz, c.country])
        for s in self.services:
            self.drop.rows["services"].append([s.code, s.client, s.name, s.calendar, s.criticality])
        days = [self.start.date() + timedelta(days=i) for i in range((self.end - self.start).days)]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(days), unit="day", desc=f"profile {self.profile.name}", mininterval=2)
        try:
            for day in days:
                self._day(day)
                if bar is not None:
                    bar.set_postfix(
                        checks=self.sinks["checks"].count, tickets=self.sinks["tickets"].count, refresh=False
                    )
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
            for sink in self.sinks.values():
                sink.close()
        import yaml

        catalogue = scaled_catalogue(self.client_list, self.services)
        (self.out_dir / "contracts.yaml").write_text(yaml.safe_dump(catalogue, sort_keys=False))
        return {n: sink.count for n, sink in self.sinks.items()}


def generate_profile(
    out_dir: Path,
    profile: str = "s",
    seed: int = 42,
    start: date | None = None,
    months: int | None = None,
    days: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write a profile's drop into ``out_dir``; returns rows per file.

    ``s`` is :func:`generate` (the demo, whole months only). ``m`` and ``l`` cover ``months`` whole months
    from ``start`` (default: the profile's months ending before the demo date), or only the first ``days``
    days from ``start`` (a year of ``l`` is 2.6 billion checks: docs/design/scale.md says what fits)."""
    prof = PROFILES[profile]
    months = months or prof.default_months
    default_start, _ = demo_window(DEMO_DATE, months)
    start = start or default_start
    if prof.name == "s":
        if days is not None:
            raise ValueError("--days is for the m and l profiles; the demo (s) covers whole months")
        return generate(out_dir, seed=seed, start=start, months=months, log=log)
    if days is not None and days < 1:
        raise ValueError("days must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    end = start + timedelta(days=days) if days else _add_months(start.replace(day=1), months)
    return _ScaledGenerator(out_dir, seed, prof, start, end).write(progress)
