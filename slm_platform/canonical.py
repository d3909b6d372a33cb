"""The canonical import format (docs: CANONICAL_FORMAT.md), as data.

One :class:`EntitySpec` per canonical file. The raw schema DDL, the loader's validation SQL and the demo
generator are all derived from these specs, so the format is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TICKET_TYPES = ("incident", "request", "complaint", "problem", "change")
PRIORITIES = ("P1", "P2", "P3", "P4")
CHECK_STATUSES = ("up", "down")
EVENT_FIELDS = ("status", "assignment_group", "priority")
SURVEY_TYPES = ("transactional", "relationship", "review")
SIP_SOURCE_TYPES = ("review", "incident")
SIP_STATUSES = ("open", "done", "cancelled")

# PostgreSQL types used by the raw tables; the loader knows how to validate each of them.
TEXT, TSTZ, DATE, BOOL, INT, SMALLINT = "text", "timestamptz", "date", "boolean", "integer", "smallint"
PG_TYPES = (TEXT, TSTZ, DATE, BOOL, INT, SMALLINT)

# Columns every raw table carries besides the canonical ones.
META_COLUMNS = (("_batch_id", "bigint"), ("_source", "text"), ("_loaded_at", "timestamptz"))


@dataclass(frozen=True)
class Reference:
    """``column`` must name an existing row of ``entity`` (looked up in the raw table)."""

    column: str
    entity: str
    target_column: str


@dataclass(frozen=True)
class EntitySpec:
    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type), in canonical order
    required: tuple[str, ...] = ()  # non-key columns that must not be null
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # inclusive bounds for numbers
    # (earlier, later): a row where later < earlier is refused.
    order_checks: tuple[tuple[str, str], ...] = ()
    references: tuple[Reference, ...] = ()
    # A service_code that must belong to the row's client_code (checked when both are set).
    service_of_client: bool = False
    # Only tickets have a version column: a newer updated_at replaces, an equal or older one is a no-op.
    # For every other entity a re-load of a key replaces the row if any value changed.
    updated_at: str | None = None
    # Column whose maximum advances raw.watermarks (None: no watermark for this entity).
    time_column: str | None = None
    pattern_checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # col -> (regex, description)
    zone_columns: tuple[str, ...] = ()  # must name an IANA time zone known to PostgreSQL

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def type_of(self, column: str) -> str:
        return dict(self.columns)[column]

    @property
    def table(self) -> str:
        return f"raw.{self.name}"


_CLIENT_REF = Reference("client_code", "clients", "client_code")
_SERVICE_REF = Reference("service_code", "services", "service_code")

ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        name="clients",
        key=("client_code",),
        columns=(("client_code", TEXT), ("client_name", TEXT), ("timezone", TEXT), ("country", TEXT)),
        required=("client_name", "timezone"),
        pattern_checks={"country": ("^[A-Z]{2}$", "ISO 3166-1 alpha-2 code")},
        zone_columns=("timezone",),
    ),
    EntitySpec(
        name="services",
        key=("service_code",),
        columns=(
            ("service_code", TEXT),
            ("client_code", TEXT),
            ("service_name", TEXT),
            ("calendar_code", TEXT),
            ("criticality", TEXT),
        ),
        required=("client_code", "service_name"),
        references=(_CLIENT_REF,),
    ),
    EntitySpec(
        name="tickets",
        key=("ticket_id",),
        columns=(
            ("ticket_id", TEXT),
            ("client_code", TEXT),
            ("service_code", TEXT),
            ("ticket_type", TEXT),
            ("priority", TEXT),
            ("opened_at", TSTZ),
            ("first_response_at", TSTZ),
            ("resolved_at", TSTZ),
            ("closed_at", TSTZ),
            ("status", TEXT),
            ("assignment_group", TEXT),
            ("is_major", BOOL),
            ("parent_ticket_id", TEXT),
            ("category", TEXT),
            ("updated_at", TSTZ),
        ),
        required=("client_code", "service_code", "ticket_type", "priority", "opened_at", "updated_at"),
        enums={"ticket_type": TICKET_TYPES, "priority": PRIORITIES},
        order_checks=(("opened_at", "resolved_at"), ("opened_at", "closed_at")),
        references=(_CLIENT_REF, _SERVICE_REF),
        service_of_client=True,
        updated_at="updated_at",
        time_column="updated_at",
    ),
    EntitySpec(
        name="ticket_events",
        key=("ticket_id", "occurred_at", "field"),
        columns=(
            ("ticket_id", TEXT),
            ("occurred_at", TSTZ),
            ("field", TEXT),
            ("from_value", TEXT),
            ("to_value", TEXT),
        ),
        enums={"field": EVENT_FIELDS},
        references=(Reference("ticket_id", "tickets", "ticket_id"),),
        time_column="occurred_at",
    ),
    EntitySpec(
        name="checks",
        key=("service_code", "checked_at"),
        columns=(("service_code", TEXT), ("checked_at", TSTZ), ("status", TEXT), ("latency_ms", INT)),
        required=("status",),
        enums={"status": CHECK_STATUSES},
        ranges={"latency_ms": (0, 2_147_483_647)},
        references=(_SERVICE_REF,),
        time_column="checked_at",
    ),
    EntitySpec(
        name="outages",
        key=("service_code", "started_at"),
        columns=(("service_code", TEXT), ("started_at", TSTZ), ("ended_at", TSTZ), ("source_ref", TEXT)),
        order_checks=(("started_at", "ended_at"),),
        references=(_SERVICE_REF,),
        time_column="started_at",
    ),
    EntitySpec(
        name="maintenance",
        key=("service_code", "starts_at"),
        columns=(
            ("service_code", TEXT),
            ("starts_at", TSTZ),
            ("ends_at", TSTZ),
            ("change_ref", TEXT),
            ("approved", BOOL),
        ),
        required=("ends_at",),
        order_checks=(("starts_at", "ends_at"),),
        references=(_SERVICE_REF,),
        time_column="starts_at",
    ),
    EntitySpec(
        name="surveys",
        key=("response_id",),
        columns=(
            ("response_id", TEXT),
            ("client_code", TEXT),
            ("survey_type", TEXT),
            ("ticket_id", TEXT),
            ("service_code", TEXT),
            ("sent_at", TSTZ),
            ("answered_at", TSTZ),
            ("csat", SMALLINT),
            ("nps", SMALLINT),
            ("ces", SMALLINT),
            ("comment", TEXT),
        ),
        required=("client_code", "survey_type", "sent_at"),
        enums={"survey_type": SURVEY_TYPES},
        ranges={"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)},
        order_checks=(("sent_at", "answered_at"),),
        references=(_CLIENT_REF, _SERVICE_REF),
        service_of_client=True,
        time_column="sent_at",
    ),
    EntitySpec(
        name="sip_actions",
        key=("action_id",),
        columns=(
            ("action_id", TEXT),
            ("client_code", TEXT),
            ("source_type", TEXT),
            ("source_ref", TEXT),
            ("title", TEXT),
            ("owner", TEXT),
            ("opened_at", TSTZ),
            ("due_on", DATE),
            ("status", TEXT),
            ("closed_at", TSTZ),
        ),
        required=("client_code", "title", "opened_at", "status"),
        enums={"source_type": SIP_SOURCE_TYPES, "status": SIP_STATUSES},
        order_checks=(("opened_at", "closed_at"),),
        references=(_CLIENT_REF,),
        time_column="opened_at",
    ),
)

ENTITY_BY_NAME: dict[str, EntitySpec] = {e.name: e for e in ENTITIES}
# Load order: referenced entities first, so that referential checks see them.
LOAD_ORDER: tuple[str, ...] = tuple(e.name for e in ENTITIES)
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")


def entity(name: str) -> EntitySpec:
    try:
        return ENTITY_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown canonical entity {name!r} (known: {', '.join(LOAD_ORDER)})") from None


def _check_specs() -> None:
    """Fail at import if a spec contradicts itself (cheap, and catches typos in the table above)."""
    for spec in ENTITIES:
        names = spec.column_names
        assert len(set(names)) == len(names), spec.name
        for col in (
            *spec.key,
            *spec.required,
            *spec.enums,
            *spec.ranges,
            *spec.pattern_checks,
            *spec.zone_columns,
        ):
            assert col in names, (spec.name, col)
        for a, b in spec.order_checks:
            assert spec.type_of(a) == spec.type_of(b) == TSTZ, (spec.name, a, b)
        for ref in spec.references:
            assert ref.column in names and ref.entity in ENTITY_BY_NAME, (spec.name, ref)
            assert LOAD_ORDER.index(ref.entity) < LOAD_ORDER.index(spec.name), (spec.name, ref)
        assert all(t in PG_TYPES for _, t in spec.columns), spec.name
        if spec.updated_at:
            assert spec.type_of(spec.updated_at) == TSTZ and spec.updated_at in spec.required
        if spec.time_column:
            assert spec.type_of(spec.time_column) == TSTZ


_check_specs()
