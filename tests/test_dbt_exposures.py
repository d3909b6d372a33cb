"""dbt exposures (dbt_project/models/_exposures.yml) against the Superset bundle (superset/assets/).

Every table a Superset dataset reads (a physical dataset's table, or each ``marts.<table>`` of a virtual
dataset's SQL) is a published mart that some exposure depends on; every dashboard has its exposure, which
depends on exactly the marts its charts read; every exposure's refs name a model of the project. So the
lineage `dbt docs` draws from the sources to each dashboard is complete, and a mart rename that forgets a
dashboard fails here, not in Superset.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from slm_platform.settings import REPO_ROOT

ASSETS = REPO_ROOT / "superset" / "assets"
MODELS = REPO_ROOT / "dbt_project" / "models"
EXPOSURES = MODELS / "_exposures.yml"
REF = re.compile(r"^ref\('([a-z0-9_]+)'\)$")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _dataset_tables() -> dict[str, set[str]]:
    """Dataset uuid -> the marts tables it reads."""
    out = {}
    for path in (ASSETS / "datasets").rglob("*.yaml"):
        ds = _load(path)
        assert ds["schema"] == "marts", (path.name, ds["schema"])
        if ds.get("sql"):
            tables = set(re.findall(r"\bmarts\.([a-z0-9_]+)", ds["sql"]))
            assert tables, f"virtual dataset {path.name} reads no marts table"
        else:
            tables = {ds["table_name"]}
        out[ds["uuid"]] = tables
    return out


def _dashboard_tables() -> dict[str, set[str]]:
    """Dashboard file stem -> the marts its charts (and native filters) read."""
    datasets = _dataset_tables()
    charts = {c["uuid"]: c["dataset_uuid"] for c in map(_load, (ASSETS / "charts").glob("*.yaml"))}
    out = {}
    for path in (ASSETS / "dashboards").glob("*.yaml"):
        text = path.read_text()
        uuids = set(re.findall(r"\buuid: ([0-9a-f-]{36})", text)) | set(
            re.findall(r"\bdatasetUuid: ([0-9a-f-]{36})", text)
        )
        tables = set()
        for uuid in uuids:
            if uuid in charts:
                tables |= datasets[charts[uuid]]
            elif uuid in datasets:
                tables |= datasets[uuid]
        out[path.stem] = tables
    return out


def _exposures() -> dict[str, set[str]]:
    """Exposure name -> the models it refs."""
    out = {}
    for exposure in _load(EXPOSURES)["exposures"]:
        refs = set()
        for dep in exposure["depends_on"]:
            match = REF.match(dep)
            assert match, (exposure["name"], dep)
            refs.add(match.group(1))
        out[exposure["name"]] = refs
    return out


def _published_marts() -> set[str]:
    """Models under models/marts/ built into the published schema (not the mart-layer helpers kept out)."""
    helpers = set()
    for path in (MODELS / "marts").rglob("_*__models.yml"):
        for model in _load(path).get("models", []):
            if (model.get("config") or {}).get("schema") == "intermediate":
                helpers.add(model["name"])
    return {p.stem for p in (MODELS / "marts").rglob("*.sql")} - helpers


def test_every_dataset_table_is_a_mart_an_exposure_names() -> None:
    named = set().union(*_exposures().values())
    tables = set().union(*_dataset_tables().values())
    assert len(tables) >= 20, tables
    assert tables <= _published_marts(), tables - _published_marts()
    assert tables <= named, f"dataset tables no exposure depends on: {sorted(tables - named)}"


def test_every_dashboard_has_its_exposure_with_the_marts_it_reads() -> None:
    exposures = _exposures()
    dashboards = _dashboard_tables()
    assert len(dashboards) >= 10
    for stem, tables in dashboards.items():
        assert tables, f"dashboard {stem} reads no dataset"
        assert exposures.get(f"dashboard_{stem}") == tables, stem
    # And no exposure names a dashboard the bundle does not have.
    kinds = {e["name"]: e["type"] for e in _load(EXPOSURES)["exposures"]}
    assert {n for n, t in kinds.items() if t == "dashboard"} == {f"dashboard_{s}" for s in dashboards}


def test_every_exposure_ref_is_a_model() -> None:
    models = {p.stem for p in MODELS.rglob("*.sql")}
    for name, refs in _exposures().items():
        assert refs, name
        assert refs <= models, (name, sorted(refs - models))
