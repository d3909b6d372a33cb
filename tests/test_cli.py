"""The command line's grammar: noun then verb, one module per command group, and release 0.1's spellings
still accepted with one deprecation line (they map to exactly the command the new spelling runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slm_platform import cli
from slm_platform.settings import REPO_ROOT

# old spelling → this release's, each with its arguments (which must pass through untouched)
OLD_TO_NEW = [
    (["dsn"], ["stack", "dsn"]),
    (["generate", "--months", "2"], ["demo", "generate", "--months", "2"]),
    (["demo"], ["demo", "up"]),
    (["demo", "--months", "3"], ["demo", "up", "--months", "3"]),
    (["import", "/tmp/drop"], ["import", "canonical", "/tmp/drop"]),
    (["import", "/tmp/drop", "--source", "x"], ["import", "canonical", "/tmp/drop", "--source", "x"]),
    (
        ["import-servicenow-export", "f.csv", "--timezone", "Europe/Paris"],
        ["import", "servicenow-export", "f.csv", "--timezone", "Europe/Paris"],
    ),
    (["import-statuspage", "h.csv"], ["import", "statuspage", "h.csv"]),
    (
        ["import-survey-export", "r.csv", "--mapping", "m.yaml"],
        ["import", "survey", "r.csv", "--mapping", "m.yaml"],
    ),
    (["incident-review", "INC1", "--client", "ACME"], ["incident", "review", "INC1", "--client", "ACME"]),
    (["loads", "--last", "3"], ["loads", "list", "--last", "3"]),
    (["loads"], ["loads", "list"]),
    (["quarantine", "--rows"], ["quarantine", "list", "--rows"]),
    (
        ["review-pack", "--client", "ACME", "--period", "2026-10"],
        ["review-pack", "build", "--client", "ACME", "--period", "2026-10"],
    ),
    (["run", "nightly", "--date", "2026-11-01"], ["nightly", "run", "--date", "2026-11-01"]),
]
NEW = [new for _, new in OLD_TO_NEW] + [
    ["stack", "up", "--only", "pg"],
    ["stack", "down"],
    ["stack", "status", "--json"],
    ["extract", "prometheus", "--start", "2026-11-01T00:00Z"],
    ["contracts", "validate"],
    ["superset", "provision"],
    ["doctor"],
]


@pytest.mark.parametrize(("old", "new"), OLD_TO_NEW, ids=lambda v: " ".join(v))
def test_an_old_spelling_runs_the_new_command_with_a_deprecation_note(old, new) -> None:
    rewritten, note = cli.modernise(old)
    assert rewritten == new
    assert note and "deprecated" in note and f"./slm {' '.join(new[:2])}" in note
    assert not any(arg in note for arg in old if "/" in arg or "." in arg), "the note names commands only"
    parser = cli.build_parser()
    assert parser.parse_args(rewritten).func is parser.parse_args(new).func


@pytest.mark.parametrize("argv", NEW, ids=lambda v: " ".join(v))
def test_a_new_spelling_is_left_alone_and_parses(argv) -> None:
    assert cli.modernise(argv) == (argv, None)
    args = cli.build_parser().parse_args(argv)
    assert callable(args.func)


def test_every_group_but_doctor_needs_a_verb(capsys) -> None:
    parser = cli.build_parser()
    groups = [g for g in parser._subparsers._group_actions[0].choices if g != "doctor"]
    assert len(groups) >= 10
    for group in groups:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([group])
        assert exc.value.code == 2, group
        assert "required" in capsys.readouterr().err


def test_the_old_spelling_works_end_to_end_and_says_so_on_stderr() -> None:
    def run(*argv: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "slm_platform.cli", *argv]
        return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    new, old = run("contracts", "validate"), run("import-statuspage", "--help")
    assert new.returncode == 0 and new.stderr == "", new.stderr
    assert "OK:" in new.stdout
    assert old.returncode == 0
    assert old.stderr.startswith(
        "note: `./slm import-statuspage` is deprecated; use `./slm import statuspage`"
    )
    assert "usage: slm import statuspage" in old.stdout
