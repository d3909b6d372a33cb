"""DagBag integrity: every DAG imports cleanly, is tagged, retries, and parses quickly (time reported)."""

from __future__ import annotations

import time

import pytest

from slm_platform.settings import REPO_ROOT


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from slm_platform.transform import dbt_runner

    dbt_runner.dbt_parse()  # Cosmos renders the dbt task group from the manifest
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    bag.parse_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return bag


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "slm_nightly" in dagbag.dags


def test_every_dag_is_tagged_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for t in dag.tasks:
            # The quality gate and publish do not retry on purpose: a failed check will not heal itself.
            # Nor does the dbt build (watcher producer): Cosmos turns its retry into a skip, not a rebuild.
            if t.task_id in {"check_raw", "publish", "dbt.dbt_producer_watcher"}:
                assert t.retries == 0
            else:
                assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_nightly_shape(dagbag) -> None:
    dag = dagbag.dags["slm_nightly"]
    ids = set(dag.task_ids)
    assert {"extract", "load", "load_contracts", "check_raw", "publish"} <= ids
    dbt_tasks = [i for i in ids if i.startswith("dbt.")]
    assert any("fct_ticket_volume" in i for i in dbt_tasks), dbt_tasks
    # publish runs only after every dbt task, and dbt only after the raw quality gate
    publish = dag.get_task("publish")
    assert set(dbt_tasks) <= publish.get_flat_relative_ids(upstream=True)
    for i in dbt_tasks:
        upstream = dag.get_task(i).get_flat_relative_ids(upstream=True)
        assert {"check_raw", "load_contracts"} <= upstream


def test_parse_time_reported(dagbag, record_property) -> None:
    record_property("dagbag_parse_seconds", round(dagbag.parse_seconds, 3))
    print(f"DagBag parse time: {dagbag.parse_seconds:.2f}s")
    assert dagbag.parse_seconds > 0


def test_nightly_runs_one_dbt_build_with_a_task_per_model(dagbag) -> None:
    """Watcher mode: one producer (`dbt build`), fed by the gate alone; every model reports in a run task
    and a test task; a failed build (the producer, or its done-gate) blocks publish."""
    dag = dagbag.dags["slm_nightly"]
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert type(producer).__name__ == "DbtProducerWatcherOperator"
    assert producer.base_cmd == ["build"]
    assert producer.upstream_task_ids == {"check_raw", "load_contracts"}
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.") and t is not producer]
    # Nothing else in the group starts before the producer has finished.
    for t in dbt_tasks:
        assert producer.task_id in t.get_flat_relative_ids(upstream=True), t.task_id
        assert not {"check_raw", "load_contracts"} & t.upstream_task_ids, t.task_id
    runs = {t.task_id.removesuffix(".run") for t in dbt_tasks if t.task_id.endswith(".run")}
    tests = {t.task_id.removesuffix(".test") for t in dbt_tasks if t.task_id.endswith(".test")}
    assert "dbt.fct_ticket_volume" in runs and "dbt.fct_ticket_volume" in tests
    assert {type(t).__name__ for t in dbt_tasks} == {
        "DbtRunWatcherOperator",
        "DbtTestWatcherOperator",
        "EmptyOperator",  # the producer's done-gate
    }
    assert "dbt.dbt_producer_watcher_done" in dag.get_task("publish").upstream_task_ids


def test_nightly_passes_the_interval_end_as_dbt_var_as_of(dagbag) -> None:
    from datetime import UTC, datetime

    dag = dagbag.dags["slm_nightly"]
    end = datetime(2026, 11, 1, tzinfo=UTC)
    for task_id in ("dbt.dbt_producer_watcher", "dbt.fct_ticket_sla.run"):
        task = dag.get_task(task_id)
        rendered = task.render_template(task.vars, {"data_interval_end": end})
        assert rendered == {"as_of": "2026-11-01T00:00:00+00:00"}, task_id


def test_dags_use_the_warehouse_hook_and_the_logger() -> None:
    """The warehouse comes from the hook on the slm_warehouse connection (slm_platform.orchestration.
    warehouse), never a hand-built URI; tasks log through the logger, never print."""
    import re

    files = sorted((REPO_ROOT / "dags").glob("*.py"))
    files += sorted((REPO_ROOT / "slm_platform" / "orchestration").glob("*.py"))
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        assert "get_uri()" not in text, path
        assert not re.search(r"\bprint\(", text), path
        assert "=print" not in text.replace(" ", ""), path  # no print handed over as a log callback
        if path.parent.name == "dags":
            assert 'Connection.get("slm_warehouse")' not in text, path


def test_no_task_emits_an_asset_nobody_consumes(dagbag) -> None:
    """Assets were emitted and nothing was scheduled on them: removed (docs/design/orchestration.md)."""
    for dag_id, dag in dagbag.dags.items():
        for t in dag.tasks:
            assert not t.outlets, f"{dag_id}.{t.task_id} emits {t.outlets}"
            # Cosmos would add one per dbt model at run time (emit_datasets, its default)
            assert not getattr(t, "emit_datasets", False), f"{dag_id}.{t.task_id} emits dbt model Assets"
            assert not getattr(t, "_should_generate_model_uris", False), f"{dag_id}.{t.task_id}"


def test_gate_waits_for_the_load_without_reading_its_xcom(dagbag) -> None:
    for dag_id in ("slm_nightly", "slm_incident_review"):
        gate = dagbag.dags[dag_id].get_task("check_raw")
        assert "load" in gate.upstream_task_ids, dag_id
        args = [*gate.op_args, *gate.op_kwargs.values()]
        sources = {getattr(getattr(a, "operator", None), "task_id", None) for a in args}
        assert "load" not in sources, dag_id


def test_surveys_dag_shape(dagbag) -> None:
    """slm_surveys: hourly interval runs, one at a time, validate → surveys → extract → load, mapped per
    survey (issue 15)."""
    dag = dagbag.dags["slm_surveys"]
    assert set(dag.task_ids) == {"validate", "surveys", "extract", "load"}
    assert dag.get_task("load").upstream_task_ids == {"extract"}
    assert {type(dag.get_task(t)).__name__ for t in ("extract", "load")} == {"DecoratedMappedOperator"}
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "0 * * * *"


def test_jira_dag_shape(dagbag) -> None:
    """slm_jira: hourly interval runs, one at a time, validate → extract → load (issue 15)."""
    dag = dagbag.dags["slm_jira"]
    assert set(dag.task_ids) == {"validate", "extract", "load"}
    assert dag.get_task("extract").upstream_task_ids == {"validate"}
    assert dag.get_task("load").upstream_task_ids == {"extract"}
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "0 * * * *"


def test_zabbix_dag_shape(dagbag) -> None:
    """slm_zabbix: hourly interval runs, one at a time, validate → extract → load (issue 15)."""
    dag = dagbag.dags["slm_zabbix"]
    assert set(dag.task_ids) == {"validate", "extract", "load"}
    assert dag.get_task("extract").upstream_task_ids == {"validate"}
    assert dag.get_task("load").upstream_task_ids == {"extract"}
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "0 * * * *"


def test_a_failed_review_is_recorded_as_failed(dagbag) -> None:
    """record_failure runs when anything up to finish fails (one_failed counts upstream_failed too), and
    only then: every task but the warm-up leads to finish, so no failure of the review can leave its row
    'running'."""
    dag = dagbag.dags["slm_incident_review"]
    task = dag.get_task("record_failure")
    assert task.trigger_rule == "one_failed"
    assert task.upstream_task_ids == {"finish"}
    upstream_of_finish = dag.get_task("finish").get_flat_relative_ids(upstream=True)
    assert set(dag.task_ids) - upstream_of_finish == {"finish", "record_failure", "warm_dashboards"}
