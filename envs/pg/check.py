"""The pg environment works: pgserver's PostgreSQL binaries are there and run (tools/build_env.sh).

Writes the files the environment's marker records (relative to the environment) to the file argv[1].
"""

import os
import subprocess
import sys
from pathlib import Path

import pgserver

bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
files = [pgserver.__file__]
for tool in ("initdb", "pg_ctl", "postgres"):
    # --version runs the binary: a truncated file or a missing shared library fails here.
    subprocess.run([str(bindir / tool), "--version"], check=True, capture_output=True)
    files.append(str(bindir / tool))
with open(sys.argv[1], "w") as out:
    out.writelines(os.path.relpath(f, sys.prefix) + "\n" for f in files)
