"""The parameters of the platform's DAGs: one JSON schema per parameter, and the check of a run's conf.

Airflow validates typed ``Param``s on the server when a run is created (REST API, UI form, ``airflow dags
trigger``, ``airflow dags test``): a value of the wrong type is refused with 400 / an error naming the
param, and no run exists. Airflow 3.3 does NOT refuse a conf key that no param declares: it adds the key
as an untyped param (``SerializedParamsDict.deep_merge``), so a misspelt key (``ful_gate``) would be
ignored silently. Every DAG therefore starts with a ``validate`` task (:func:`validate_task`) that checks
the run's conf against the DAG's schemas and fails the run at once, naming each unknown or bad key and
why, before anything else runs. docs/design/orchestration.md tells which refusal happens where.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# ISO-8601 with a zone (Z or ±hh:mm): a zone-less time would have to be guessed. jsonschema's "date-time"
# format is only checked when rfc3339-validator is installed, so the pattern does the work.
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"

_log = logging.getLogger(__name__)

NIGHTLY: dict[str, dict[str, Any]] = {
    "drop": {
        "type": ["null", "string"],
        "minLength": 1,
        "title": "Drop folder",
        "description": "folder to extract the night's files from; empty: SLM_DROP_DIR",
    },
    "full_gate": {
        "type": "boolean",
        "title": "Full quality gate",
        "description": "validate every loaded check, not only the batches since the last passed window",
    },
}
NIGHTLY_DEFAULTS: dict[str, Any] = {"drop": None, "full_gate": False}

# The hourly extracts (slm_servicenow, slm_prometheus): the window normally starts at the DAG's extract
# mark (catch-up) or the interval start, whichever is earlier; `since` reaches further back on request.
EXTRACT: dict[str, dict[str, Any]] = {
    "since": {
        "type": ["null", "string"],
        "pattern": ISO_PATTERN,
        "title": "Extract since",
        "description": (
            "re-extract from this instant (ISO-8601 with zone), e.g. after a repair at the source;"
            " empty: from the last extracted window's end (catch-up) or the interval start"
        ),
    },
}
EXTRACT_DEFAULTS: dict[str, Any] = {"since": None}


class Refused(ValueError):
    """A run's parameters were refused; ``problems`` are (parameter, why) pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{param}: {why}" for param, why in self.problems))


def params(schemas: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The DAG's ``params``: one typed Param per schema (Airflow checks these when a run is created)."""
    from airflow.sdk import Param

    return {name: Param(defaults.get(name), **schema) for name, schema in schemas.items()}


def check_conf(
    dag_id: str,
    conf: Mapping[str, Any] | None,
    schemas: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, Any] | None = None,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """The conf checked against the schemas, with defaults filled in; :class:`Refused` names every
    unknown key (with the keys the DAG takes) and every value its schema refuses."""
    from jsonschema import Draft202012Validator

    conf = dict(conf or {})
    problems: list[tuple[str, str]] = [
        (key, f"unknown parameter: {dag_id} takes {', '.join(sorted(schemas)) or 'no parameters'}")
        for key in sorted(set(conf) - set(schemas))
    ]
    values = {**(defaults or {}), **{k: v for k, v in conf.items() if k in schemas}}
    problems += [(name, "required") for name in required if name not in values]
    for name, schema in schemas.items():
        if name in values:
            problems += [
                (name, err.message) for err in Draft202012Validator(schema).iter_errors(values[name])
            ]
    if problems:
        raise Refused(problems)
    return values


def when(value: str) -> datetime:
    """A value matching ISO_PATTERN as an aware datetime."""
    return datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))


def validate_task(dag_id: str, schemas: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any]):
    """The first task of a DAG: the run's conf (as triggered, not Airflow's merged params) checked against
    the DAG's schemas. A refusal logs one ``REFUSED <key>: <why>`` line per problem and fails the run
    without retry (AirflowFailException), so nothing downstream runs. Returns the checked values."""
    from airflow.sdk import get_current_context, task

    @task(task_id="validate")
    def validate() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        conf = get_current_context()["dag_run"].conf or {}
        try:
            values = check_conf(dag_id, conf, schemas, defaults)
        except Refused as exc:
            for param, why in exc.problems:
                _log.error(f"REFUSED {param}: {why}")
            raise AirflowFailException(f"{dag_id}: conf refused: {exc}") from None
        _log.info(f"{dag_id}: conf accepted: {values}")
        return values

    return validate()
