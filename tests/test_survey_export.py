"""Survey-tool export import (LimeSurvey CSV responses + participants, Typeform-style JSON): every row read
is loaded or quarantined with its reason, unanswered invitations are kept, a rerun changes nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from slm_platform import cli
from slm_platform.load.imports import survey_export_file as import_export
from slm_platform.load.loader import load_drop
from slm_platform.sources.demo_data import generate
from slm_platform.sources.surveys.export import convert
from slm_platform.sources.surveys.mapping import MappingError, load_mapping
from tests.conftest import query_dicts

REPO = Path(__file__).resolve().parents[1]
MAPPING = REPO / "config" / "sources" / "survey_export_sample.yaml"
RESPONSES = REPO / "tests" / "data" / "survey_export_limesurvey_responses.csv"
PARTICIPANTS = REPO / "tests" / "data" / "survey_export_limesurvey_participants.csv"

# The fixture's deliberately bad responses (by export id) and the reason the loader must give.
BAD = {
    "LS482915-5": "answered_at before sent_at",  # submitted the day before its invitation was sent
    "LS482915-6": "nps out of range 0..10: '11'",
    "LS482915-7": "unknown client_code: 'UMBRELLA'",
    "LS482915-8": "service_code 'GLOBEX-PORTAL' belongs to client 'GLOBEX', not 'ACME'",
    "LS482915-9": "bad integer in csat: 'A9'",  # an answer code the mapping does not know
    "LS482915-10": "bad timestamp in answered_at: '19/10/2026 10:00'",
}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def db_with_clients(fresh_db: str, tmp_path: Path) -> str:
    """The demo clients and services (the export's hidden fields name them), nothing else."""
    generate(tmp_path / "demo")
    (tmp_path / "ref").mkdir()
    for name in ("clients.csv", "services.csv"):
        shutil.copy(tmp_path / "demo" / name, tmp_path / "ref" / name)
    load_drop(fresh_db, tmp_path / "ref")
    return fresh_db


def _raw_surveys(dsn: str) -> dict[str, dict]:
    rows = query_dicts(
        dsn,
        "select response_id, client_code, survey_type, ticket_id, service_code, sent_at, answered_at,"
        " csat, nps, ces, comment from raw.surveys",
    )
    return {r.pop("response_id"): r for r in rows}


def test_import_reconciles_and_quarantines_each_bad_case_with_its_reason(db_with_clients: str) -> None:
    dsn = db_with_clients
    mapping = load_mapping(MAPPING)
    result = import_export(dsn, RESPONSES, mapping, PARTICIPANTS)

    # Rows the export holds, counted here from the files: every response record, plus every invitation
    # that was sent and has no response record.
    responses = _read(RESPONSES)
    participants = _read(PARTICIPANTS)
    tokens_with_response = {r["token"] for r in responses if r["token"]}
    unanswered_sent = [
        p for p in participants if p["invited"] != "N" and p["token"] not in tokens_with_response
    ]
    assert result.responses_read == len(responses)
    assert result.invitations_without_response == len(unanswered_sent)
    assert result.invitations_not_sent == sum(p["invited"] == "N" for p in participants)
    assert result.rows_written == len(responses) + len(unanswered_sent)

    [batch] = result.load
    assert batch.entity == "surveys" and batch.source == "limesurvey_482915"
    assert batch.rows_read == result.rows_written
    assert batch.rows_read == batch.rows_loaded + batch.rows_unchanged + batch.rows_quarantined
    recorded = query_dicts(
        dsn,
        "select rows_read, rows_loaded, rows_quarantined, status from raw.load_batches where batch_id = %s",
        (batch.batch_id,),
    )
    assert recorded == [
        {
            "rows_read": batch.rows_read,
            "rows_loaded": batch.rows_loaded,
            "rows_quarantined": batch.rows_quarantined,
            "status": "ok",
        }
    ]

    quarantined = query_dicts(
        dsn,
        "select raw_record ->> 'response_id' as response_id, reason, location,"
        " raw_record ->> 'export_location' as export_location"
        " from raw.quarantine where batch_id = %s",
        (batch.batch_id,),
    )
    assert len(quarantined) == batch.rows_quarantined
    reasons = {q["response_id"]: q["reason"] for q in quarantined if q["reason"] != "duplicate key in file"}
    assert reasons == BAD
    # Response id 11 is in the export twice: the earlier line is refused, the later one kept.
    dupes = [q for q in quarantined if q["reason"] == "duplicate key in file"]
    ids = [r["id"] for r in responses]
    assert [q["response_id"] for q in dupes] == [
        f"LS482915-{i}" for i in sorted(set(ids)) if ids.count(i) > 1
    ]
    # Every quarantined row points back to the export line it came from.
    assert all(q["export_location"].startswith("survey_export_limesurvey_") for q in quarantined)

    raw = _raw_surveys(dsn)
    assert len(raw) == batch.rows_loaded
    assert set(raw).isdisjoint(BAD)
    assert raw["LS482915-11"]["comment"] == "Second attempt, corrected"
    # Answer code A5 -> 5, "2.0000000000" -> 2, hidden fields from the participant's attributes, and the
    # invitation's send time (10:00 Paris) as sent_at.
    first = raw["LS482915-1"]
    assert (first["client_code"], first["ticket_id"], first["service_code"]) == (
        "ACME",
        "INC0000101",
        "ACME-ERP",
    )
    assert (first["csat"], first["nps"], first["ces"], first["survey_type"]) == (5, 9, 2, "transactional")
    assert first["sent_at"].isoformat() == "2026-10-05T08:00:00+00:00"
    # Scores at their bounds load.
    assert (raw["LS482915-12"]["csat"], raw["LS482915-12"]["nps"], raw["LS482915-12"]["ces"]) == (1, 0, 7)
    # An anonymous response: hidden fields from the response itself, invitation time = its start time.
    anon = raw["LS482915-4"]
    assert (anon["client_code"], anon["survey_type"], anon["nps"]) == ("GLOBEX", "relationship", 10)
    # Invitations without an answer are there (they count in the response rate): the two participants who
    # never opened the survey, and the one who started without submitting.
    unanswered = {rid for rid, r in raw.items() if r["answered_at"] is None}
    assert unanswered == {"LS482915-3"} | {f"LS482915-T-{p['token']}" for p in unanswered_sent}


def test_rerun_is_idempotent(db_with_clients: str) -> None:
    dsn = db_with_clients
    mapping = load_mapping(MAPPING)
    first = import_export(dsn, RESPONSES, mapping, PARTICIPANTS)
    before = _raw_surveys(dsn)
    second = import_export(dsn, RESPONSES, mapping, PARTICIPANTS)
    assert _raw_surveys(dsn) == before
    [b1], [b2] = first.load, second.load
    assert (b2.rows_read, b2.rows_loaded, b2.rows_unchanged) == (b1.rows_read, 0, b1.rows_loaded)
    assert b2.rows_quarantined == b1.rows_quarantined  # the same bad rows, refused again for the same reasons
    watermarks = query_dicts(
        dsn, "select source, entity from raw.watermarks where source = 'limesurvey_482915'"
    )
    assert watermarks == [{"source": "limesurvey_482915", "entity": "surveys"}]


def test_cli_imports_an_export(db_with_clients: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    class _Server:
        def dsn(self, _dbname: str) -> str:
            return db_with_clients

    monkeypatch.setattr("slm_platform.ops.stack.pg_server", lambda: _Server())
    code = cli.main(
        [
            "import", "survey",
            str(RESPONSES),
            "--mapping",
            str(MAPPING),
            "--invitations",
            str(PARTICIPANTS),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "converted 13 responses (1 not submitted) and 2 unanswered invitations" in out
    assert len(_raw_surveys(db_with_clients)) == 8


def test_zone_less_times_without_a_configured_zone_are_quarantined(
    db_with_clients: str, tmp_path: Path
) -> None:
    text = MAPPING.read_text().replace("timezone: Europe/Paris", "")
    (tmp_path / "m.yaml").write_text(text)
    result = import_export(db_with_clients, RESPONSES, load_mapping(tmp_path / "m.yaml"), PARTICIPANTS)
    [batch] = result.load
    reasons = {q["reason"] for q in query_dicts(db_with_clients, "select reason from raw.quarantine")}
    assert batch.rows_loaded == 0 and batch.rows_quarantined == batch.rows_read
    assert any(r.startswith("timestamp without offset in sent_at") for r in reasons)


def test_typeform_style_json_export(db_with_clients: str, tmp_path: Path) -> None:
    """Typeform's response JSON holds hidden fields in a nested object: mapped with dotted names."""
    items = [
        {
            "response_id": "r1",
            "landed_at": "2026-10-02T08:00:00Z",
            "submitted_at": "2026-10-02T08:03:00Z",
            "hidden": {"client": "INITECH", "service": "INITECH-SAP", "ticket": "INC0000042"},
            "answers": {"csat": 4, "nps": 8.0, "why": "Good"},
        },
        {
            "response_id": "r2",
            "landed_at": "2026-10-03T08:00:00Z",
            "submitted_at": None,
            "hidden": {"client": "INITECH", "service": None, "ticket": None},
            "answers": {},
        },
    ]
    (tmp_path / "export.json").write_text(json.dumps({"items": items}))
    (tmp_path / "m.yaml").write_text(
        "source: typeform_csat\n"
        "responses:\n  id: response_id\n  id_prefix: 'TF-'\n  submitted_at: submitted_at\n"
        "  started_at: landed_at\n"
        "  questions: {csat: answers.csat, nps: answers.nps, comment: answers.why}\n"
        "  hidden: {client_code: hidden.client, service_code: hidden.service, ticket_id: hidden.ticket}\n"
        "defaults: {survey_type: transactional}\n"
    )
    result = import_export(db_with_clients, tmp_path / "export.json", load_mapping(tmp_path / "m.yaml"))
    [batch] = result.load
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined) == (2, 2, 0)
    raw = _raw_surveys(db_with_clients)
    assert (raw["TF-r1"]["csat"], raw["TF-r1"]["nps"], raw["TF-r1"]["comment"]) == (4, 8, "Good")
    assert raw["TF-r2"]["answered_at"] is None and raw["TF-r2"]["csat"] is None


def test_mapping_and_export_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "source: x\nresponses:\n  id: id\n  submitted_at: submitdate\n  questions: {happiness: Q1}\n"
    )
    with pytest.raises(MappingError, match=r"bad.yaml: responses.questions: unknown key\(s\) happiness"):
        load_mapping(bad)
    text = MAPPING.read_text().replace("csat: SATIS", "csat: SATISFACTION")
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(
        ValueError, match="column\\(s\\) SATISFACTION named in the mapping are not in the export"
    ):
        convert(RESPONSES, load_mapping(tmp_path / "m.yaml"), tmp_path / "out", PARTICIPANTS)
