"""The contract catalogue validator: the sample is valid, and every refusal names file, entry and field."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import pytest
import yaml

from slm_platform.contracts import catalogue as contracts
from slm_platform.contracts.catalogue import (
    CatalogueError,
    load_catalogue,
    main_validate,
    support_findings,
    validate,
)
from slm_platform.settings import REPO_ROOT

SAMPLE = contracts.DEFAULT_CATALOGUE

BASE: dict = {
    "calendars": [
        {
            "code": "FR-BUSINESS",
            "timezone": "Europe/Paris",
            "hours": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": "FR",
            "closed": [date(2026, 12, 24)],
        },
        {"code": "24x7", "timezone": "UTC", "hours": "always"},
    ],
    "agreements": [
        {
            "id": "SLA-ACME-2026",
            "kind": "SLA",
            "party": "ACME",
            "valid_from": date(2026, 1, 1),
            "valid_to": None,
            "supported_by": ["OLA-SERVICEDESK"],
            "objectives": [
                {"metric": "resolution", "ticket_type": "incident", "priority": "P1", "target_minutes": 240,
                 "calendar": "24x7", "threshold_pct": 95},
                {"metric": "availability", "target_pct": 99.9, "calendar": "24x7", "period": "month"},
                {"metric": "csat", "target_pct": 85, "period": "quarter"},
            ],
        },
        {
            "id": "OLA-SERVICEDESK",
            "kind": "OLA",
            "party": "ServiceDesk",
            "valid_from": date(2026, 1, 1),
            "valid_to": None,
            "objectives": [
                {"metric": "resolution", "ticket_type": "incident", "priority": "P1", "target_minutes": 30,
                 "calendar": "24x7", "threshold_pct": 95},
            ],
        },
    ],
}


def write(tmp_path: Path, data: dict | str, name: str = "contracts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def mutated(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def only_error(path: Path) -> contracts.ValidationError:
    errors = validate(path)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def assert_names(err: contracts.ValidationError, path: Path, entry: str, field: str, *words: str) -> None:
    assert err.file == str(path)
    assert err.entry == entry
    assert err.field == field
    text = str(err)
    assert str(path) in text and entry in text and field in text
    for w in words:
        assert w in err.message, err.message


# ------------------------------------------------------------------------------------------ valid input


def test_sample_catalogue_is_valid_and_cli_reports_counts(capsys):
    assert validate(SAMPLE) == []
    raw = yaml.safe_load(SAMPLE.read_text())
    assert main_validate(SAMPLE) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"OK: {len(raw['calendars'])} calendars, {len(raw['agreements'])} agreements"


def test_cli_default_is_the_sample(capsys):
    assert main_validate(None) == 0
    assert capsys.readouterr().out.startswith("OK: ")


def test_sample_covers_the_demo_clients_and_an_amendment():
    cat = load_catalogue(SAMPLE)
    assert {"FR-BUSINESS", "US-BUSINESS", "DE-BUSINESS", "24x7"} <= set(cat.calendars)
    assert cat.calendars["24x7"].always_open
    zones = {code: (c.timezone, c.holidays) for code, c in cat.calendars.items()}
    assert zones["FR-BUSINESS"] == ("Europe/Paris", "FR")
    assert zones["US-BUSINESS"] == ("America/New_York", "US")
    assert zones["DE-BUSINESS"] == ("Europe/Berlin", "DE")
    slas = {a.party for a in cat.agreements if a.kind == "SLA"}
    assert {"ACME", "GLOBEX", "INITECH"} <= slas
    assert {a.kind for a in cat.agreements} == {"SLA", "OLA", "UC"}
    amended = [i for i in {a.id for a in cat.agreements} if len(cat.versions(i)) > 1]
    assert amended, "the sample must hold an amendment (two versions of one agreement)"
    v1, v2 = cat.versions(amended[0])[:2]
    assert cat.agreement(amended[0], v1.valid_from) == v1
    assert cat.agreement(amended[0], v2.valid_from) == v2
    for sla in (a for a in cat.agreements if a.kind == "SLA"):
        metrics = {(o.metric, o.period) for o in sla.objectives}
        assert ("availability", "month") in metrics and ("csat", "quarter") in metrics
        assert {o.target_pct for o in sla.objectives if o.metric == "availability"} == {99.9}
        assert {o.target_pct for o in sla.objectives if o.metric == "csat"} == {85}


def test_worked_example_7_sla_not_supported_by_its_chain():
    cat = load_catalogue(SAMPLE)
    found = [
        f for f in support_findings(cat, date(2026, 5, 1))
        if (f.sla_id, f.objective.ticket_type, f.objective.priority) == ("SLA-ACME-2026", "incident", "P1")
    ]
    assert len(found) == 1
    f = found[0]
    assert f.objective.target_minutes == 240 and f.objective.calendar == "24x7"
    assert dict(f.chain) == {"OLA-SERVICEDESK": 30, "OLA-NETWORK": 120, "UC-CARRIER-X": 240}
    assert f.total_minutes == 390
    assert not f.supported
    assert f.cause == "UC-CARRIER-X"


def test_support_follows_chains_through_an_ola(tmp_path):
    def chain(d):
        d["agreements"][1]["supported_by"] = ["UC-CARRIER"]
        d["agreements"].append({
            "id": "UC-CARRIER", "kind": "UC", "party": "Carrier", "valid_from": date(2026, 1, 1),
            "objectives": [{"metric": "resolution", "ticket_type": "incident", "priority": "P1",
                            "target_minutes": 200, "calendar": "24x7", "threshold_pct": 95}],
        })

    cat = load_catalogue(write(tmp_path, mutated(chain)))
    (f,) = support_findings(cat, date(2026, 3, 1))
    assert f.total_minutes == 230 and f.supported  # 30 + 200 <= 240
    assert dict(f.chain) == {"OLA-SERVICEDESK": 30, "UC-CARRIER": 200}


def test_valid_edge_cases_are_accepted(tmp_path):
    def edges(d):
        d["calendars"][0]["hours"]["sat"] = ["00:00-12:00", "12:00-24:00"]  # touching intervals, 24:00 end
        d["agreements"][0]["valid_to"] = date(2026, 6, 30)
        amendment = copy.deepcopy(d["agreements"][0])
        amendment["valid_from"], amendment["valid_to"] = date(2026, 7, 1), None  # the day after
        amendment["objectives"][0]["threshold_pct"] = 100
        d["agreements"].append(amendment)

    assert validate(write(tmp_path, mutated(edges))) == []


# ------------------------------------------------------------------------------------------- refusals


def test_unknown_calendar(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][0].update(calendar="MARS")))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[0].calendar",
                 "unknown calendar", "MARS")


def test_overlapping_versions(tmp_path):
    def overlap(d):
        d["agreements"][0]["valid_to"] = date(2026, 7, 1)
        v2 = copy.deepcopy(d["agreements"][0])
        v2["valid_from"], v2["valid_to"] = date(2026, 7, 1), None
        d["agreements"].append(v2)

    path = write(tmp_path, mutated(overlap))
    assert_names(only_error(path), path, "agreements[2] (SLA-ACME-2026)", "valid_from",
                 "overlaps agreements[0] (SLA-ACME-2026)")


def test_overlapping_open_ended_versions(tmp_path):
    def overlap(d):
        v2 = copy.deepcopy(d["agreements"][0])
        v2["valid_from"] = date(2027, 1, 1)
        d["agreements"].append(v2)

    path = write(tmp_path, mutated(overlap))
    assert_names(only_error(path), path, "agreements[2] (SLA-ACME-2026)", "valid_from", "open-ended")


@pytest.mark.parametrize(
    ("index", "field", "value"),
    [
        (0, "target_minutes", 0),
        (0, "target_minutes", -15),
        (0, "threshold_pct", 0),
        (0, "threshold_pct", 100.5),
        (1, "target_pct", 0),
        (1, "target_pct", -1),
        (2, "target_pct", 101),
    ],
)
def test_target_out_of_range(tmp_path, index, field, value):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][index].update({field: value})))
    err = only_error(path)
    assert_names(err, path, "agreements[0] (SLA-ACME-2026)", f"objectives[{index}].{field}", str(value))


def test_target_must_be_a_number(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][0].update(target_minutes="4h")))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[0].target_minutes",
                 "expected a number")


def test_unknown_time_zone(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["calendars"][0].update(timezone="Europe/Atlantis")))
    assert_names(only_error(path), path, "calendars[0] (FR-BUSINESS)", "timezone", "Europe/Atlantis")


def test_unknown_holiday_country(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["calendars"][0].update(holidays="XX")))
    assert_names(only_error(path), path, "calendars[0] (FR-BUSINESS)", "holidays", "XX")


def test_unquoted_norway_is_explained(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False).replace("holidays: FR", "holidays: NO")
    path = write(tmp_path, text)
    assert_names(only_error(path), path, "calendars[0] (FR-BUSINESS)", "holidays", "quote")


@pytest.mark.parametrize(
    ("span", "words"),
    [("8-18", "HH:MM-HH:MM"), ("18:00-08:00", "start must be before end"), ("09:00-09:00", "before end"),
     ("25:00-26:00", "HH:MM-HH:MM"), ("08:00 - 18:00", "HH:MM-HH:MM"), ("08:00-18:60", "HH:MM-HH:MM")],
)
def test_bad_hours(tmp_path, span, words):
    path = write(tmp_path, mutated(lambda d: d["calendars"][0]["hours"].update(tue=[span])))
    assert_names(only_error(path), path, "calendars[0] (FR-BUSINESS)", "hours.tue[0]", words)


def test_overlapping_hours_and_unknown_weekday(tmp_path):
    def bad(d):
        d["calendars"][0]["hours"]["mon"] = ["08:00-12:00", "11:00-18:00"]
        d["calendars"][0]["hours"]["mo"] = ["08:00-12:00"]

    path = write(tmp_path, mutated(bad))
    errors = {(e.entry, e.field) for e in validate(path)}
    assert errors == {("calendars[0] (FR-BUSINESS)", "hours.mon"), ("calendars[0] (FR-BUSINESS)", "hours.mo")}


def test_bad_hours_word(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["calendars"][1].update(hours="24x7")))
    assert_names(only_error(path), path, "calendars[1] (24x7)", "hours", "always")


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [("metric", "mttr", "objectives[0].metric"), ("ticket_type", "outage", "objectives[0].ticket_type"),
     ("priority", "P5", "objectives[0].priority"), ("priority", "p1", "objectives[0].priority")],
)
def test_unknown_metric_type_priority(tmp_path, field, value, where):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][0].update({field: value})))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", where, "unknown", value)


def test_unknown_kind(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][1].update(kind="XLA")))
    assert_names(only_error(path), path, "agreements[1] (OLA-SERVICEDESK)", "kind", "XLA")


def test_missing_required_objective_field(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][1].pop("period")))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[1].period", "required")


def test_unknown_field_is_a_typo(tmp_path):
    def typo(d):
        obj = d["agreements"][0]["objectives"][0]
        obj["target_minute"] = obj.pop("target_minutes")

    path = write(tmp_path, mutated(typo))
    fields = {e.field for e in validate(path)}
    assert fields == {"objectives[0].target_minute", "objectives[0].target_minutes"}


def test_duplicate_objective_is_ambiguous(tmp_path):
    def dup(d):
        objs = d["agreements"][0]["objectives"]
        objs.append({**objs[0], "target_minutes": 120})

    path = write(tmp_path, mutated(dup))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[3]", "objectives[0]")


def test_supported_by_unknown_agreement(tmp_path):
    refs = ["OLA-SERVICEDESK", "UC-GONE"]
    path = write(tmp_path, mutated(lambda d: d["agreements"][0].update(supported_by=refs)))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "supported_by[1]", "UC-GONE")


def test_supported_by_an_sla_or_a_loop(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][1].update(supported_by=["SLA-ACME-2026"])))
    assert_names(only_error(path), path, "agreements[1] (OLA-SERVICEDESK)", "supported_by[0]", "SLA")

    def loop(d):
        d["agreements"].append({**copy.deepcopy(d["agreements"][1]), "id": "OLA-NET",
                                "supported_by": ["OLA-SERVICEDESK"]})
        d["agreements"][1]["supported_by"] = ["OLA-NET"]

    path = write(tmp_path, mutated(loop), "loop.yaml")
    err = only_error(path)
    assert err.field == "supported_by" and "loops" in err.message and err.file == str(path)


def test_valid_to_before_valid_from(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][1].update(valid_to=date(2025, 12, 31))))
    assert_names(only_error(path), path, "agreements[1] (OLA-SERVICEDESK)", "valid_to", "before valid_from")


def test_bad_date(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["agreements"][1].update(valid_from="2026-02-30")))
    assert_names(only_error(path), path, "agreements[1] (OLA-SERVICEDESK)", "valid_from", "2026-02-30")


def test_duplicate_yaml_key(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "  party: ServiceDesk\n", "  party: ServiceDesk\n  party: Network\n"
    )
    path = write(tmp_path, text)
    err = only_error(path)
    assert_names(err, path, "agreements[1] (OLA-SERVICEDESK)", "party", "appears twice")


def test_duplicate_calendar_code(tmp_path):
    path = write(tmp_path, mutated(lambda d: d["calendars"].append(copy.deepcopy(d["calendars"][1]))))
    assert_names(only_error(path), path, "calendars[2] (24x7)", "code", "twice")


def test_not_yaml_and_missing_file(tmp_path):
    path = write(tmp_path, "calendars: [\n")
    err = only_error(path)
    assert err.file == str(path) and "not valid YAML" in err.message
    missing = tmp_path / "nope.yaml"
    assert "cannot read" in only_error(missing).message


def test_whole_catalogue_refused_with_every_error(tmp_path, capsys):
    def several(d):
        d["calendars"][0]["timezone"] = "Nowhere/Town"
        d["agreements"][0]["objectives"][0]["target_minutes"] = 0
        d["agreements"][1]["kind"] = "XLA"

    path = write(tmp_path, mutated(several))
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(path)
    assert {(e.entry, e.field) for e in exc.value.errors} == {
        ("calendars[0] (FR-BUSINESS)", "timezone"),
        ("agreements[0] (SLA-ACME-2026)", "objectives[0].target_minutes"),
        ("agreements[1] (OLA-SERVICEDESK)", "kind"),
    }
    assert main_validate(path) == 1
    captured = capsys.readouterr()
    assert "OK" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(str(path)) for line in lines[:3])
    assert "3 error" in lines[3]


# ------------------------------------------------------------------------------------------ measured_by


def test_measured_by_defaults_to_checks_and_is_read(tmp_path):
    def declare(d):
        d["agreements"][0]["objectives"][1]["measured_by"] = "reported_outages"

    default = load_catalogue(write(tmp_path, BASE, "default.yaml"))
    declared = load_catalogue(write(tmp_path, mutated(declare), "declared.yaml"))
    assert default.agreements[0].objectives[1].measured_by == "checks"
    assert declared.agreements[0].objectives[1].measured_by == "reported_outages"
    # Other metrics do not take it.
    assert default.agreements[0].objectives[0].measured_by is None


def test_sample_statuspage_contract_declares_reported_outages():
    catalogue = load_catalogue(REPO_ROOT / "contracts" / "statuspage_sample.yaml")
    (objective,) = catalogue.agreements[0].objectives
    assert (objective.metric, objective.measured_by) == ("availability", "reported_outages")


@pytest.mark.parametrize("value", ["status_page", "Checks", None, 1])
def test_bad_measured_by(tmp_path, value):
    path = write(tmp_path, mutated(lambda d: d["agreements"][0]["objectives"][1].update(measured_by=value)))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[1].measured_by",
                 "unknown measured_by", "checks", "reported_outages")


def test_measured_by_only_on_availability(tmp_path):
    def add(d):
        d["agreements"][0]["objectives"][2]["measured_by"] = "checks"

    path = write(tmp_path, mutated(add))
    assert_names(only_error(path), path, "agreements[0] (SLA-ACME-2026)", "objectives[2].measured_by")
