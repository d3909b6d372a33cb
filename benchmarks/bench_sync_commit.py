"""What ``synchronous_commit = on`` costs the loader's per-file commit (docs/design/loading.md, section 4).

On scratch clusters (the embedded cluster's settings, then with ``fsync = on`` as a production server has
it), alternately with the loader's ``LoadOptions(synchronous_commit=...)`` off and on: the median time of
the last step of 100 one-row loads (batch row, watermark, commit) and of one 100,000-ticket load. Run from
the repository: ``.venvs/airflow/bin/python benchmarks/bench_sync_commit.py``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slm_platform.load import loader  # noqa: E402
from tests.test_crash import OwnCluster  # noqa: E402
from tests.test_loader import CLIENTS, TICKET_HEADER  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_sync_commit_"))
    (work / "clients.csv").write_text(CLIENTS)
    big = work / "tickets.csv"
    with open(big, "w") as fh:
        fh.write(TICKET_HEADER + "\n")
        for i in range(100_000):
            day, minute = 1 + i % 28, i % 1440
            at = f"2026-10-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"
            fh.write(
                f"T{i:07d},ACME,ACME-ERP,incident,P{1 + i % 4},{at},,,,new,ServiceDesk,false,,app,{at}\n"
            )
    try:
        for fsync in ("off", "on"):
            own = OwnCluster()
            own.c.init()
            with open(own.c.datadir / "postgresql.conf", "a") as conf:
                conf.write(f"\nfsync = {fsync}\n")
            own.c.start()
            try:
                for mode in ("off", "on", "off", "on"):
                    options = loader.LoadOptions(synchronous_commit=mode)
                    conn = loader.connect(own.create_db())
                    loader.ensure_raw_schema(conn)
                    clients = loader.ENTITY_BY_NAME["clients"]
                    small = statistics.median(
                        loader._load_file(
                            conn, clients, work / "clients.csv", "canonical", options
                        ).step_seconds["commit"]
                        for _ in range(100)
                    )
                    with conn.cursor() as cur:
                        cur.execute(
                            "insert into raw.services values ('ACME-ERP','ACME','ERP',null,null,0,'x',now())"
                        )
                    conn.commit()
                    r = loader._load_file(conn, loader.ENTITY_BY_NAME["tickets"], big, "canonical", options)
                    conn.close()
                    last = r.step_seconds["commit"] * 1000
                    print(
                        f"fsync={fsync} synchronous_commit={mode}: one-row file {small * 1000:.1f} ms "
                        f"(median); 100k tickets {last:.0f} ms, whole load {r.seconds:.2f} s",
                        flush=True,
                    )
            finally:
                own.c.stop()
                shutil.rmtree(own.c.root, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
