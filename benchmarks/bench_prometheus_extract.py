"""Prometheus extract: peak memory as the window grows, and time vs a bare download of the same answers.

    .venvs/airflow/bin/python benchmarks/bench_prometheus_extract.py [--series 100] [--days 1 10]
        [--step 60] [--chunk 1d] [--repeat 2]

Writes ``--series`` 0/1 series at ``--step`` over the largest of ``--days`` (ending an hour ago) into a
throw-away TSDB with ``promtool tsdb create-blocks-from openmetrics``, starts a real ``prometheus`` on
127.0.0.1 over it, then for each window size, in a child process each (best of ``--repeat``):
  - baseline: GET every chunk's ``/api/v1/query_range`` answer and parse its JSON, nothing else;
  - extract: ``extract_checks`` of the same window (same chunks) into a gzipped canonical file.
Prints samples/s of both, their ratio, and the extract's peak resident memory (VmHWM): it should stay flat
as the window grows (the file streams; memory holds one chunk's answer). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.sources import prometheus as prom  # noqa: E402


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def _child(args: argparse.Namespace) -> None:
    """One measurement, in a fresh process so that VmHWM is this run's alone."""
    cfg = prom.config_from_dict(
        {
            "expression": "probe_success",
            "step": f"{args.step}s",
            "chunk": args.chunk,
            "services": [
                {"match": {"instance": f"svc{i:05d}"}, "service_code": f"S{i:05d}"}
                for i in range(args.series)
            ],
        }
    )
    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    t0 = time.perf_counter()
    if args.child == "baseline":
        session, samples = requests.Session(), 0
        for first, last in prom.plan_chunks(start, end, cfg.step_seconds, cfg.points_per_chunk):
            r = session.get(
                f"{args.url}/api/v1/query_range",
                params={"query": cfg.expression, "start": first, "end": last, "step": cfg.step_seconds},
                timeout=300,
            )
            samples += sum(len(s["values"]) for s in r.json()["data"]["result"])
    else:
        with tempfile.TemporaryDirectory() as out:
            res = prom.extract_checks(cfg, start, end, Path(out), url=args.url)
            samples = res.samples
            assert res.rows_unmapped == 0
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - t0, "hwm_kb": _vm_hwm_kb()}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backfill(work: Path, series: int, start: int, end: int, step: int) -> Path:
    om = work / "history.om"
    with open(om, "w") as fh:
        fh.write("# TYPE probe_success gauge\n")
        for i in range(series):
            name = f'probe_success{{instance="svc{i:05d}"}}'
            # each series down for 5 steps every 997 steps, at its own phase: realistic, compressible
            fh.writelines(
                f"{name} {0 if (t // step + i) % 997 < 5 else 1} {t}\n" for t in range(start, end, step)
            )
        fh.write("# EOF\n")
    tsdb = work / "tsdb"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(tsdb)],
        check=True,
        timeout=3600,
    )
    om.unlink()
    return tsdb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100)
    p.add_argument("--days", type=int, nargs="+", default=[1, 10])
    p.add_argument("--step", type=int, default=60)
    p.add_argument("--chunk", default="1d")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--child", choices=["baseline", "extract"])
    p.add_argument("--url")
    p.add_argument("--start")
    p.add_argument("--end")
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        sys.exit("prometheus/promtool missing: make system-packages")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    longest = end - timedelta(days=max(args.days))
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        tsdb = _backfill(work, args.series, int(longest.timestamp()), int(end.timestamp()), args.step)
        print(f"backfilled {args.series} series x {max(args.days)} days in {time.perf_counter() - t0:.0f} s")
        port = _free_port()
        (work / "prometheus.yml").write_text("scrape_configs: []\n")
        cmd = [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.retention.time={max(args.days) + 2}d",
            "--log.level=warn",
        ]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            rows = []
            for days in args.days:
                start = end - timedelta(days=days)
                best: dict[str, dict] = {}
                for kind in ("baseline", "extract") * args.repeat:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            kind,
                            "--url",
                            url,
                            "--series",
                            str(args.series),
                            "--step",
                            str(args.step),
                            "--chunk",
                            args.chunk,
                            "--start",
                            start.isoformat(),
                            "--end",
                            end.isoformat(),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    if kind not in best or r["seconds"] < best[kind]["seconds"]:
                        best[kind] = r
                rows.append((days, best))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{args.series} series, step {args.step} s, chunk {args.chunk} (best of {args.repeat})")
    print(f"{'days':>5} {'samples':>10} {'baseline/s':>11} {'extract/s':>10} {'ratio':>6} {'peak RSS':>9}")
    for days, best in rows:
        b, e = best["baseline"], best["extract"]
        assert b["samples"] == e["samples"], (b, e)
        rate_b, rate_e = b["samples"] / b["seconds"], e["samples"] / e["seconds"]
        print(
            f"{days:>5} {e['samples']:>10} {rate_b:>11.0f} {rate_e:>10.0f} {rate_e / rate_b:>6.2f} "
            f"{e['hwm_kb'] / 1024:>7.1f}MB"
        )
    first, last = rows[0][1]["extract"]["hwm_kb"], rows[-1][1]["extract"]["hwm_kb"]
    growth = rows[-1][1]["extract"]["samples"] / max(1, rows[0][1]["extract"]["samples"])
    print(f"peak memory x{last / first:.2f} for x{growth:.0f} samples (flat = 1.00)")


if __name__ == "__main__":
    main()
