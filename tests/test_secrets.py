"""Secrets stay out of the repository (its tree and its whole history) and out of reach on the machine.

The scan is detect-secrets (Yelp) with every plugin and filter recorded in `.secrets.baseline`; the
baseline lists the findings that were read and judged not secret (placeholders such as
`postgresql://USER:PASSWORD@HOST`, the weak values the production check must refuse, and the two values
this module plants to prove the scan sees), each marked
`is_secret: false`. Anything else it finds, in the checkout or in any blob of any commit, fails the test
with its file and line, so a leaked secret cannot hide in a commit that a later one removed.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / ".secrets.baseline"


def _git(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, input=stdin, capture_output=True, text=True, check=True
    ).stdout


def _baseline() -> dict:
    return json.loads(BASELINE.read_text())


def _scan(paths: list[str], cwd: Path) -> list[tuple[str, int, str, str]]:
    """(file, line, type, hashed secret) of every finding, with the baseline's plugins and filters."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import transient_settings

    if not paths:
        return []
    data = _baseline()
    found = SecretsCollection(root=str(cwd))
    with transient_settings({"plugins_used": data["plugins_used"], "filters_used": data["filters_used"]}):
        found.scan_files(*paths, num_processors=2)
    return [(name, s.line_number, s.type, s.secret_hash) for name, s in found]


def _scan_cached(files: dict[str, tuple[str, Path]], cwd: Path) -> list[tuple[str, int, str, str]]:
    """``_scan`` of ``files`` (path under ``cwd`` -> (git blob id, path in the repository)), remembering each
    blob's findings.

    A blob's findings depend only on its bytes, its path (filters read it) and the scan settings, so
    they are kept in .slm/cache/ keyed on all three: a rerun scans only what changed (``make check``); a
    fresh clone (CI) scans everything."""
    cache_file = _cache_file()
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    key = {name: _key(blob, path) for name, (blob, path) in files.items()}
    todo = [name for name in files if key[name] not in cache]
    fresh: dict[str, list] = {key[name]: [] for name in todo}
    for name, line, kind, secret in _scan(todo, cwd):
        fresh[key[name]].append([line, kind, secret])
    if fresh:
        cache.update(fresh)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    return [(name, line, kind, secret) for name in files for line, kind, secret in cache[key[name]]]


def _cache_file() -> Path:
    """Where blob findings are kept, one file per scan configuration (plugins and filters)."""
    data = _baseline()
    settings = hashlib.sha256(
        json.dumps([data["plugins_used"], data["filters_used"]], sort_keys=True).encode()
    ).hexdigest()[:16]
    return REPO / ".slm" / "cache" / f"detect-secrets-{settings}.json"


def _key(blob: str, path: Path) -> str:
    return f"{blob}:{path.as_posix()}"


def _cached_keys() -> set[str]:
    cache_file = _cache_file()
    return set(json.loads(cache_file.read_text())) if cache_file.exists() else set()


def _allowed() -> set[tuple[str, str]]:
    return {
        (r["type"], r["hashed_secret"])
        for results in _baseline()["results"].values()
        for r in results
        if r.get("is_secret") is False
    }


def test_baseline_entries_are_all_audited() -> None:
    """Every baseline entry was read by a person and judged: none is left unaudited or marked secret."""
    entries = [(f, r) for f, rs in _baseline()["results"].items() for r in rs]
    assert entries, "the baseline should record the known placeholders (an empty one means the scan broke)"
    unaudited = [(f, r["line_number"], r["type"]) for f, r in entries if r.get("is_secret") is not False]
    assert unaudited == []


def test_the_tree_holds_no_secret() -> None:
    files = _git("ls-files").split()
    files = [f for f in files if f != ".secrets.baseline" and (REPO / f).is_file()]
    blobs = _git("hash-object", "--stdin-paths", stdin="\n".join(files)).split()
    allowed = _allowed()
    found = _scan_cached({f: (b, Path(f)) for f, b in zip(files, blobs, strict=True)}, REPO)
    leaks = [(f, line, kind) for f, line, kind, h in found if (kind, h) not in allowed]
    assert leaks == [], f"possible secrets in the checkout (audit false ones into .secrets.baseline): {leaks}"


def test_the_history_holds_no_secret(tmp_path: Path) -> None:
    """Every blob of every commit, scanned under its own path (detect-secrets' filters read the name)."""
    objects = _git("rev-list", "--all", "--objects").splitlines()
    named = {}
    for line in objects:
        sha, _, path = line.partition(" ")
        if path:
            named.setdefault(sha, path)
    kinds = _git(
        "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)", stdin="\n".join(named)
    )
    kinds = kinds.split("\n")
    blobs = [k.split()[0] for k in kinds if k.split()[1:2] == ["blob"] and int(k.split()[2]) < 5_000_000]
    assert len(blobs) > 100, "the history should hold hundreds of blobs: is this a shallow clone?"
    files = {}
    for sha in blobs:
        if Path(named[sha]).name == ".secrets.baseline":
            continue
        files[f"{sha[:12]}/{named[sha]}"] = (sha, Path(named[sha]))
    allowed = _allowed()
    cached = _cached_keys()
    for rel, (sha, path) in files.items():
        if _key(sha, path) in cached:
            continue  # its findings are known: no need to write it out
        dest = tmp_path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(
            subprocess.run(["git", "cat-file", "blob", sha], cwd=REPO, capture_output=True, check=True).stdout
        )
    leaks = [
        (f, line, kind) for f, line, kind, h in _scan_cached(files, tmp_path) if (kind, h) not in allowed
    ]
    assert leaks == [], f"possible secrets in the history (<blob>/<path>, line, type): {leaks}"


def test_the_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    """The scan is not blind: a realistic key and a DSN with a real-looking password are both reported."""
    planted = tmp_path / "settings.py"
    planted.write_text(
        'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"\n'
        'DSN = "postgresql://slm:Zq8vLp2rT9xK@db.internal:5432/slm_warehouse"\n'
    )
    # Both values are audited in the baseline (this file holds them), so the findings are read unfiltered.
    assert {line for _, line, _, _ in _scan(["settings.py"], tmp_path)} == {1, 2}


def _secret_values(creds: object) -> set[str]:
    if isinstance(creds, dict):
        return set().union(*(_secret_values(v) for v in creds.values())) if creds else set()
    if isinstance(creds, str) and len(creds) >= 8:
        return {creds}
    return set()


def test_secret_files_of_a_running_stack_are_private(demo_stack) -> None:
    """stack.json and credentials.json are mode 600; any other file holding a generated secret is
    readable by its owner only, and no log holds one."""
    home = demo_stack.home
    for name in ("stack.json", "credentials.json"):
        mode = stat.S_IMODE((home / name).stat().st_mode)
        assert mode == 0o600, f"{name} is mode {mode:o}"
    secrets = _secret_values(json.loads((home / "credentials.json").read_text()))
    assert len(secrets) >= 8, "the stack should have generated its secrets"
    exposed, logged = [], []
    for path in home.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 20_000_000:
            continue
        data = path.read_bytes()
        holding = [s for s in secrets if s.encode() in data]
        if not holding:
            continue
        rel = str(path.relative_to(home))
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            exposed.append((rel, oct(stat.S_IMODE(path.stat().st_mode))))
        if path.suffix == ".log" or "logs" in path.relative_to(home).parts:
            logged.append(rel)
    assert exposed == [], f"files holding a secret readable by others: {exposed}"
    assert logged == [], f"logs holding a secret: {logged}"


@pytest.mark.parametrize("stale_mode", [0o644, 0o666])
def test_private_json_is_private_even_over_a_stale_temp_file(tmp_path: Path, stale_mode: int) -> None:
    """A temp file left by an interrupted write (with a looser mode) must not loosen the result."""
    from slm_platform.settings import write_private_json

    target = tmp_path / "credentials.json"
    stale = target.with_suffix(".tmp")
    stale.write_text("{}")
    stale.chmod(stale_mode)
    write_private_json(target, {"pg_password": "x" * 24})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {"pg_password": "x" * 24}
