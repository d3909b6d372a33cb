"""The dbt environment works: its interpreter imports dbt and the postgres adapter (tools/build_env.sh).

Writes the files the environment's marker records (relative to the environment) to the file argv[1].
"""

import importlib
import os
import sys

files = [
    importlib.import_module(name).__file__ for name in ("dbt.cli.main", "dbt.adapters.postgres", "sqlfluff")
]
with open(sys.argv[1], "w") as out:
    out.writelines(os.path.relpath(f, sys.prefix) + "\n" for f in files)
