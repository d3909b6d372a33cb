"""The package's layout is its architecture: one subpackage per stage, imports pointing one way.

sources → load / contracts → gate → transform → dashboards / reports → orchestration → ops → cli. A module
may import its own package, a lower stage and the core modules (``errors``, ``settings``, ``canonical``),
never a later stage nor a sibling of its own rank; ``reference`` (independent implementations the tests
check figures against) is imported by nothing in the package. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from slm_platform.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "slm_platform"
CORE = {"__init__", "errors", "settings", "canonical"}
RANK = {
    "sources": 1,
    "load": 2,
    "contracts": 2,
    "gate": 3,
    "transform": 4,
    "dashboards": 5,
    "reports": 5,
    "orchestration": 6,
    "ops": 7,
    "cli": 8,
    "reference": 9,
}
EXPECTED_TOP = CORE | set(RANK)


def stage_of(dotted: str) -> str | None:
    """The stage of ``slm_platform.x.y`` (``x``), None for the core modules and for other packages."""
    parts = dotted.split(".")
    if parts[0] != "slm_platform" or len(parts) == 1:
        return None
    return None if parts[1] in CORE else parts[1]


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every ``slm_platform`` module ``path`` imports, at any depth, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from slm_platform.x import y` may name a module y: count the deeper one.
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.startswith("slm_platform")]


def violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        own = stage_of(module)
        for line, target in imported_modules(path, module):
            other = stage_of(target)
            if other is None or other == own:
                continue
            where = f"{path.relative_to(root.parent)}:{line} imports {target}"
            if other == "reference":
                out.append(f"{where}: the reference implementations are for tests and benchmarks only")
            elif own is None:
                out.append(f"{where}: a core module imports a stage")
            elif RANK[other] > RANK[own]:
                out.append(f"{where}: {own} ({RANK[own]}) imports a later stage, {other} ({RANK[other]})")
            elif RANK[other] == RANK[own]:
                out.append(f"{where}: {own} and {other} are siblings of one rank")
    return out


def test_the_package_holds_only_the_stages_and_the_core() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    top = {p.stem for p in PACKAGE.glob("*.py")} | packages
    assert top == EXPECTED_TOP, sorted(top ^ EXPECTED_TOP)


def test_imports_point_one_way() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("where", "source", "complaint"),
    [
        ("sources/fake.py", "from slm_platform.load.loader import load_drop\n", "imports a later stage"),
        ("load/fake.py", "def f():\n    from slm_platform.gate import quality\n", "imports a later stage"),
        ("dashboards/fake.py", "from slm_platform.reports import svg\n", "siblings of one rank"),
        ("ops/fake.py", "from slm_platform.reference import business_time\n", "tests and benchmarks only"),
        ("settings.py", "import slm_platform.load.loader\n", "a core module imports a stage"),
    ],
)
def test_the_check_finds_an_import_against_the_direction(tmp_path: Path, where, source, complaint) -> None:
    root = tmp_path / "slm_platform"
    (root / where).parent.mkdir(parents=True, exist_ok=True)
    (root / where).write_text(source)
    found = violations(root)
    assert len(found) == 1 and complaint in found[0], found


def test_a_later_stage_may_import_an_earlier_one(tmp_path: Path) -> None:
    root = tmp_path / "slm_platform"
    (root / "transform").mkdir(parents=True)
    (root / "transform" / "ok.py").write_text(
        "from slm_platform.load import raw_schema\nfrom slm_platform.settings import REPO_ROOT\n"
        "from . import publish\n"
    )
    assert violations(root) == []
