"""The Superset datasets agree with the mart contracts: a dataset over the published marts reads a mart whose
contract is enforced, names only columns of that contract, and gives each the contract's type; a virtual
dataset (custom SQL) reads only contracted marts. A renamed or retyped mart column fails here, not in a
dashboard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from slm_platform.settings import REPO_ROOT

DATASETS = REPO_ROOT / "superset" / "assets" / "datasets"
MARTS = REPO_ROOT / "dbt_project" / "models" / "marts"
# The contract's data_type → the type Superset records for the column.
SUPERSET_TYPE = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "numeric": "NUMERIC",
    "text": "TEXT",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}


def contracts(root: Path = MARTS) -> dict[str, dict[str, str]]:
    """Mart name → {column: data_type}, for the marts whose contract is enforced."""
    out = {}
    for path in root.rglob("_*__models.yml"):
        for model in yaml.safe_load(path.read_text()).get("models") or []:
            if ((model.get("config") or {}).get("contract") or {}).get("enforced"):
                out[model["name"]] = {c["name"]: c["data_type"] for c in model.get("columns", [])}
    return out


def superset_type(data_type: str) -> str:
    return SUPERSET_TYPE[re.sub(r"\(.*\)$", "", data_type.strip().lower()).strip()]


def disagreements(datasets: Path = DATASETS, marts: Path = MARTS) -> list[str]:
    contract = contracts(marts)
    found = []
    for path in sorted(datasets.rglob("*.yaml")):
        ds = yaml.safe_load(path.read_text())
        name = ds["table_name"]
        if ds.get("sql"):
            read = set(re.findall(r"\bmarts\.(\w+)", ds["sql"]))
            found += [
                f"{name}: its SQL reads marts.{t}, which has no enforced contract"
                for t in read - set(contract)
            ]
            if not read:
                found.append(f"{name}: its SQL reads no published mart")
            continue
        if ds.get("schema") != "marts" or name not in contract:
            found.append(f"{name}: not a mart with an enforced contract ({ds.get('schema')}.{name})")
            continue
        for col in ds["columns"]:
            if col.get("expression"):
                continue  # a computed column: Superset's SQL over contract columns
            column, typ = col["column_name"], col.get("type")
            if column not in contract[name]:
                found.append(f"{name}.{column}: not in the contract")
            elif typ != superset_type(contract[name][column]):
                found.append(f"{name}.{column}: dataset {typ}, contract {contract[name][column]}")
    return found


def test_every_dataset_agrees_with_the_mart_contracts() -> None:
    assert len(contracts()) >= 20
    assert disagreements() == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda s: s.replace("column_name: elapsed_business_minutes", "column_name: elapsed_minutes"),
            "not in the contract",
        ),
        (lambda s: s.replace("  type: NUMERIC\n", "  type: BIGINT\n", 1), "dataset BIGINT, contract numeric"),
        (
            lambda s: s.replace("table_name: fct_ticket_sla", "table_name: fct_ticket_slas"),
            "not a mart with an enforced contract",
        ),
    ],
)
def test_the_check_fails_on_a_changed_dataset(tmp_path: Path, change, complaint) -> None:
    copy = tmp_path / "datasets"
    copy.mkdir()
    original = (DATASETS / "warehouse" / "fct_ticket_sla.yaml").read_text()
    (copy / "fct_ticket_sla.yaml").write_text(change(original))
    found = disagreements(copy)
    assert len(found) == 1 and complaint in found[0], found
