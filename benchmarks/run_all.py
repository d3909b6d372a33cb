"""Every benchmark of benchmarks/ with its baseline, side by side, written to docs/benchmarks.md (issue 13).

    SLM_HOME=/tmp/bench ./slm stack up --only pg,airflow      # superset too for the dashboards benchmark
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/run_all.py [--full] [--only NAME ...]

Each benchmark runs as its own process, one after the other (they would measure each other otherwise), with a
quick size by default (the whole run takes some tens of minutes on 2 cores) and its own defaults with
``--full``. Its whole output goes to ``$SLM_HOME/bench/<name>.log``; the report keeps the lines that carry
its figures and puts the ratios to each baseline in one table, with the machine (cores, memory, CPU model),
the date and the load average before and after each benchmark (a shared machine measures its neighbours
too). A benchmark that needs a part of the stack that is not running (Superset for the dashboards) is
listed as not run, with the reason; one that fails is listed as failed with the tail of its output.
Nothing is asserted: the figures are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Bench:
    name: str  # also the log's name
    script: str
    quick: list[str]
    full: list[str]
    needs: str = ""  # "", "pg", "airflow", "superset"
    keep: tuple[str, ...] = ()  # regexes of the output lines worth keeping in the report
    ok_codes: tuple[int, ...] = (0,)  # exit codes of a run that measured (1: a goal missed, for some)
    result: dict = field(default_factory=dict)


def benches(home: Path, dsn: str) -> list[Bench]:
    s_log = str(home / "logs" / "nightly-2026-11-01.log")
    return [
        Bench("load", "bench_load.py", ["--tickets", "100000", "--checks", "1000000", "--repeat", "1"], [],
              "pg", (r"^== ", r"bare COPY", r"load_drop", r"peak RSS")),
        Bench("business_time", "bench_business_time.py",
              ["--tickets", "200000", "--naive-sample", "2000", "--python-sample", "5000", "--repeat", "1"],
              [],
              "pg", (r"^tickets:", r"set-based", r"naive", r"per-ticket Python")),
        Bench("quality_gate", "bench_quality_gate.py",
              ["--dsn", dsn, "--old", "1000000", "--new", "100000", "--repeat", "1"], ["--dsn", dsn],
              "pg", (r"^attempt", r"^best:")),
        Bench("availability_increment", "bench_availability_increment.py",
              ["--services", "200", "--history-days", "2,6"], [], "pg",
              (r"^database", r"history \(days\)", r"^\s*\d+ \|"), ok_codes=(0, 1)),
        Bench("prometheus_extract", "bench_prometheus_extract.py",
              ["--series", "20", "--days", "1", "4", "--repeat", "1"], [], "",
              (r"series, step", r"^\s*days", r"^\s*\d+\s+\d+", r"peak memory")),
        Bench("sync_commit", "bench_sync_commit.py", [], [], "", (r"fsync=",)),
        Bench("profile_s", "bench_profiles.py", ["--profile", "s"], ["--profile", "s"], "airflow",
              (r"^profile", r"^  ")),
        Bench("nightly", "bench_nightly.py", ["--from-log", s_log],
              ["--drop", str(home / "drops" / "demo"), "--repeat", "2"], "airflow", (r".",)),
        Bench("incident_review", "bench_incident_review.py", ["--skip-nightly"], [], "airflow",
              (r"^review", r"^nightly", r"^median")),
        Bench("profile_m", "bench_profiles.py", ["--profile", "m", "--days", "2"],
              ["--profile", "m", "--days", "7"], "airflow", (r"^profile", r"^  ")),
        Bench("profile_l", "bench_profiles.py", ["--profile", "l", "--days", "1", "--no-increment"],
              ["--profile", "l", "--days", "1"], "airflow", (r"^profile", r"^  ")),
        # Side by side: the configuration before issue 13 and the product, on the same stack and data.
        Bench("dashboards", "bench_dashboards_configs.py", ["--users", "20", "--duration", "30"],
              ["--users", "20", "--duration", "60", "--with-no-permcache", "--with-no-answers"], "superset",
              (r".",)),
        # The connectors against their local protocol servers (no stack needed).
        Bench("survey_api", "bench_survey_api.py", ["--responses", "2000", "--repeat", "1"], [], "", (r".",)),
        Bench("jira_api", "bench_jira_api.py", ["--issues", "1000", "--repeat", "1"], [], "", (r".",)),
        Bench("zabbix_api", "bench_zabbix_api.py",
              ["--problems", "2000", "--checks", "10000", "--repeat", "1"], [], "", (r".",)),
    ]  # fmt: skip


def machine() -> dict[str, str]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "cpu": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    }


def running() -> set[str]:
    """The parts of the stack of $SLM_HOME that answer: pg, airflow, superset."""
    from slm_platform.ops import stack

    up = set()
    try:
        status = stack.status()
    except Exception:  # noqa: BLE001 - no stack: nothing runs
        return up
    for part in ("postgresql", "airflow", "superset"):
        if status.get(part, {}).get("running"):
            up.add("pg" if part == "postgresql" else part)
    return up


def run(b: Bench, full: bool, home: Path) -> None:
    log = home / "bench" / f"{b.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = b.full if full else b.quick
    cmd = [sys.executable, str(REPO / "benchmarks" / b.script), *args]
    if b.name.startswith("profile_"):
        cmd += ["--json", str(home / "bench" / f"{b.name}.json")]
    # The report is committed: a DSN's password (the stack's, generated) is masked in the command shown.
    shown = [re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", a) for a in args]
    b.result.update(load_before=os.getloadavg()[0], command=" ".join(["benchmarks/" + b.script, *shown]))
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    b.result.update(seconds=time.perf_counter() - started, load_after=os.getloadavg()[0], rc=proc.returncode)
    lines = log.read_text(errors="replace").splitlines()
    kept = [ln for ln in lines if any(re.search(k, ln) for k in b.keep)]
    b.result["lines"] = kept[-40:] if proc.returncode in b.ok_codes else lines[-15:]
    b.result["log"] = str(log)
    if b.name.startswith("profile_") and proc.returncode in b.ok_codes:
        b.result["json"] = json.loads((home / "bench" / f"{b.name}.json").read_text())
    if b.name == "load" and proc.returncode in b.ok_codes:
        for ln in reversed(lines):
            if ln.startswith("["):
                b.result["json"] = json.loads(ln)
                break
    (home / "bench" / f"{b.name}.result.json").write_text(json.dumps(b.result, indent=1))


def _find(b: Bench, pattern: str, group: int = 1) -> str:
    for ln in b.result.get("lines", []):
        if m := re.search(pattern, ln):
            return m.group(group)
    return ""


def ratio_rows(bs: dict[str, Bench]) -> list[tuple[str, str, str]]:
    """(comparison, figure, source) for the summary table, from what each benchmark printed."""
    rows: list[tuple[str, str, str]] = []

    def ok(name: str) -> bool:
        return name in bs and bs[name].result.get("rc") in bs[name].ok_codes

    if ok("load") and "json" in bs["load"].result:
        for rep in bs["load"].result["json"]:
            for scen, r in rep["scenarios"].items():
                k, u = r["ratios"]["keyed"]["wall"], r["ratios"]["unindexed"]["wall"]
                rows.append(
                    (
                        f"load vs bare COPY: {rep['rows']:,} {rep['entity']}, {scen}",
                        f"{k:.0%} of COPY with the key, {u:.0%} without (goal >= 60 %); peak "
                        f"{r['peak_rss_mb']:.0f} MB",
                        "bench_load",
                    )
                )
    if ok("business_time"):
        faster = _find(bs["business_time"], r"naive.*set-based is ([\d,.]+x) faster")
        rate = _find(bs["business_time"], r"set-based.*?: [\d.]+ s, ([\d,]+ tickets/s)")
        rows.append(
            (
                "business time: set-based vs naive per-minute SQL",
                f"{faster} faster ({rate} per metric)",
                "bench_business_time",
            )
        )
        py = [ln for ln in bs["business_time"].result["lines"] if "per-ticket Python" in ln]
        if py and (m := re.search(r"set-based is ([\d,.]+x) faster", py[0])):
            rows.append(
                (
                    "business time: set-based vs the Python reference",
                    f"{m.group(1)} faster",
                    "bench_business_time",
                )
            )
    if ok("availability_increment"):
        last = [ln for ln in bs["availability_increment"].result["lines"] if re.match(r"^\s*\d+ \|", ln)]
        if last:
            cells = [c.strip() for c in last[-1].split("|")]
            rows.append(
                (
                    f"nightly availability increment vs full rebuild ({cells[0]} days of history)",
                    f"{cells[1]} s vs {cells[2]} s = {cells[3]} (goal <= 10 %)",
                    "bench_availability_increment",
                )
            )
    for name in ("profile_m", "profile_l"):
        if ok(name) and "increment_vs_first" in bs[name].result.get("json", {}):
            j = bs[name].result["json"]
            rows.append(
                (
                    f"nightly increment (one day) vs first nightly, profile {j['profile']} ({j['window']})",
                    f"{j['increment']['to_publish_s']} s vs {j['nightly']['to_publish_s']} s to publish"
                    f" = x{j['increment_vs_first']}",
                    "bench_profiles",
                )
            )
    if ok("quality_gate"):
        rows.append(
            (
                "quality gate by window vs whole tables",
                _find(bs["quality_gate"], r"^best: (.*)"),
                "bench_quality_gate",
            )
        )
    if ok("prometheus_extract"):
        rows.append(
            (
                "Prometheus extract vs bare download (rate ratio by window; memory)",
                "; ".join(
                    f"{ln.split()[0]} d: x{ln.split()[4]}"
                    for ln in bs["prometheus_extract"].result["lines"]
                    if re.match(r"^\s*\d+\s+\d+", ln)
                )
                + "; "
                + _find(bs["prometheus_extract"], r"(peak memory .*)"),
                "bench_prometheus_extract",
            )
        )
    if ok("sync_commit"):
        rows.append(
            (
                "synchronous_commit on vs off, the loader's commit",
                "; ".join(bs["sync_commit"].result["lines"]),
                "bench_sync_commit",
            )
        )
    if ok("nightly"):
        rows.append(
            (
                "nightly at s (the demo, 13 months), split from its log",
                _find(bs["nightly"], r"^(run 1: .*)") + "; " + _find(bs["nightly"], r"^(median .*)"),
                "bench_nightly",
            )
        )
    if ok("incident_review"):
        rows.append(
            (
                "incident review, trigger to report",
                _find(bs["incident_review"], r"^(median .*)"),
                "bench_incident_review",
            )
        )
    nightly_cells = []
    for name in ("profile_s", "profile_m", "profile_l"):
        if ok(name):
            j = bs[name].result["json"]
            n = j["nightly"]
            steps = ", ".join(f"{k} {v} s" for k, v in n["steps"].items())
            nightly_cells.append((j, n, steps))
    if nightly_cells:
        base = nightly_cells[0][1]["to_publish_s"]
        for j, n, steps in nightly_cells:
            rows.append(
                (
                    f"first nightly at profile {j['profile']} ({j['window']}; "
                    f"{j['drop']['rows'].get('checks', 0):,} checks,"
                    f" {j['drop']['rows'].get('tickets', 0):,} tickets)",
                    f"{n['to_publish_s']} s to publish (x{n['to_publish_s'] / base:.1f} of"
                    f" {nightly_cells[0][0]['profile']}), {n['wall_s']} s in all"
                    + (f" (failed: {', '.join(n['failed_tasks'])})" if n.get("failed_tasks") else "")
                    + f"; {steps}; "
                    f"peak RSS {n['peak_rss_mb']} MB; generate {j['generate']['wall_s']} s, "
                    f"{j['generate']['peak_rss_mb']} MB",
                    "bench_profiles",
                )
            )
    if "dashboards" in bs:
        d = bs["dashboards"].result
        if d.get("rc") == 0:
            rows.append(
                (
                    "dashboards under load, 20 users: the product vs the configuration before issue 13",
                    "; ".join(line for line in d["lines"] if " / before (" in line),
                    "bench_dashboards",
                )
            )
        else:
            rows.append(
                ("dashboards before/after", d.get("skipped") or "failed: see below", "bench_dashboards")
            )
    return rows  # fmt: skip


def report(bs: list[Bench], full: bool, started: datetime, load0: tuple[float, ...]) -> str:
    m = machine()
    out = [
        "# Benchmarks",
        "",
        f"Written by `benchmarks/run_all.py{' --full' if full else ''}` (`make bench`) on"
        f" {started:%Y-%m-%d %H:%M} UTC. "
        "Every figure is one run on the machine below; the machine may have been shared (the load average "
        "before and after each benchmark is given): read ratios, not absolute times. Nothing here is a "
        "pass/fail. Full outputs: `$SLM_HOME/bench/<name>.log`.",
        "",
        f"- machine: {m['cores']} cores, {m['memory']} RAM, {m['cpu']}; {m['system']}",
        f"- load average at the start: {', '.join(f'{x:.2f}' for x in load0)}; "
        f"at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- sizes: " + ("their own defaults (--full)" if full else "quick (--full: their own defaults)"),
        "",
        "## Ratios to each baseline",
        "",
        "| comparison | figure | benchmark |",
        "| --- | --- | --- |",
    ]  # fmt: skip
    for comp, fig, src in ratio_rows({b.name: b for b in bs}):
        out.append(f"| {comp} | {fig.replace('|', '/')} | {src} |")
    listed = {b.script for b in benches(Path("."), "")}
    unlisted = sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py") if p.name not in listed)
    if unlisted:
        out += ["", f"Not in run_all.py's list yet (not run): {', '.join(unlisted)}."]
    out += ["", "## Each benchmark", ""]
    for b in bs:
        r = b.result
        out.append(f"### {b.name}")
        out.append("")
        if "skipped" in r:
            out += [f"Not run: {r['skipped']}.", ""]
            continue
        status = (
            "ok"
            if r["rc"] == 0
            else f"exit {r['rc']}" + (" (a goal missed)" if r["rc"] in b.ok_codes else "")
        )
        out.append(
            f"`{r['command']}`: {status}, {r['seconds']:.0f} s, load average {r['load_before']:.1f} -> "
            f"{r['load_after']:.1f}"
        )
        out += ["", "```", *r["lines"], "```", ""]
    return "\n".join(out) + "\n"


def merge(existing: str, bs: list[Bench], started: datetime) -> str:
    """``existing`` (a report) with the rows and sections of ``bs`` replaced by theirs: ``--only X --merge``
    re-runs one benchmark on another day or machine without dropping the others' figures."""
    new_rows = [
        f"| {c} | {f.replace('|', '/')} | {src} |" for c, f, src in ratio_rows({b.name: b for b in bs})
    ]
    sources = {row.rsplit("|", 2)[-2].strip() for row in new_rows}
    lines = existing.rstrip("\n").split("\n")
    sections = lines.index("## Each benchmark")
    table = [
        i
        for i, line in enumerate(lines[:sections])
        if line.startswith("| ") and line.rsplit("|", 2)[-2].strip() in sources
    ]
    at = table[0] if table else sections - 1
    lines = [line for i, line in enumerate(lines) if i not in table]
    lines[at:at] = new_rows
    text = "\n".join(lines) + "\n"
    for b in bs:
        section = report([b], False, started, os.getloadavg()).split("## Each benchmark\n\n", 1)[1]
        head = f"### {b.name}\n"
        if head in text:
            start = text.index(head)
            end = text.find("\n### ", start + len(head))
            text = text[:start] + section.rstrip("\n") + ("\n" + text[end:] if end >= 0 else "\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
    note = (
        f"- re-run alone on {started:%Y-%m-%d %H:%M} UTC (`run_all.py --only {' '.join(b.name for b in bs)}"
        f" --merge`); load average then {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return text.replace("\n\n## Ratios to each baseline", f"\n{note}\n\n## Ratios to each baseline", 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="each benchmark's own default sizes (hours)")
    ap.add_argument("--only", nargs="*", help="run only these (names of the report's sections)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument(
        "--keep-others",
        action="store_true",
        help="with --only: the report also shows the other benchmarks' last results ($SLM_HOME/bench)",
    )
    ap.add_argument("--report-only", action="store_true", help="run nothing: the report of the saved results")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace only those benchmarks' rows and sections in the existing --out",
    )
    args = ap.parse_args()
    if args.merge and not args.only:
        ap.error("--merge needs --only")
    from slm_platform.settings import pg_server, slm_home

    home = slm_home()
    up = running()
    dsn = os.environ.get("SLM_TEST_PG_URL") or (pg_server().dsn("postgres") if "pg" in up else "")
    started, load0 = datetime.now(UTC), os.getloadavg()
    every = benches(home, dsn)
    selected = [b for b in every if not args.only or b.name in args.only]
    run_file = home / "bench" / "run.json"
    if args.report_only:  # the saved run's start and load
        selected = []
        saved_run = json.loads(run_file.read_text())
        started, load0 = datetime.fromisoformat(saved_run["started"]), tuple(saved_run["load"])
    else:
        run_file.parent.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"started": started.isoformat(), "load": load0}))
    if args.keep_others or args.report_only:
        for b in every:
            saved = home / "bench" / f"{b.name}.result.json"
            if b not in selected and saved.exists():
                b.result = json.loads(saved.read_text())
    shown = [b for b in every if b in selected or b.result]
    for b in selected:
        need = b.needs
        if need and need not in up and not (need == "pg" and dsn):
            b.result["skipped"] = f"needs {need} on the stack of SLM_HOME={home} (./slm stack up)"
            print(f"-- {b.name}: not run ({b.result['skipped']})", flush=True)
            (home / "bench" / f"{b.name}.result.json").write_text(json.dumps(b.result, indent=1))
            continue
        print(f"-- {b.name} ...", flush=True)
        run(b, args.full, home)
        print(f"   {'ok' if b.result['rc'] == 0 else 'FAILED'} in {b.result['seconds']:.0f} s", flush=True)
        if not args.merge:
            done = [x for x in shown if x.result]  # the report so far: an interrupted run keeps its figures
            args.out.write_text(report(done, args.full, started, load0))
    if args.merge:
        args.out.write_text(merge(args.out.read_text(), selected, started))
    else:
        args.out.write_text(report(shown, args.full, started, load0))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
