"""``./slm``: the operator's command line, noun then verb (``./slm stack up``, ``./slm import statuspage
FILE``). One module per command group; each adds its parsers in ``register``.

The spellings of release 0.1 (``./slm dsn``, ``./slm import-statuspage FILE``, ``./slm run nightly``, …) still
work in this release: :func:`modernise` rewrites them and prints one deprecation line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from slm_platform.cli import admin, demo, imports, loads, nightly, reviews, stack
from slm_platform.errors import StackError

GROUPS = (stack, demo, imports, loads, nightly, reviews, admin)

# Release 0.1's spellings → this release's (removed in 0.3). A value is the new words that replace the
# old first word; the rest of the command line follows unchanged.
RENAMED = {
    "dsn": ["stack", "dsn"],
    "generate": ["demo", "generate"],
    "import-servicenow-export": ["import", "servicenow-export"],
    "import-statuspage": ["import", "statuspage"],
    "import-survey-export": ["import", "survey"],
    "incident-review": ["incident", "review"],
}
# Old commands that took no verb: the verb they now need, unless the next word already is one of theirs.
IMPLIED_VERB = {
    "demo": ("up", {"up", "generate"}),
    "import": ("canonical", {"canonical", "servicenow-export", "statuspage", "survey"}),
    "loads": ("list", {"list"}),
    "quarantine": ("list", {"list"}),
    "review-pack": ("build", {"build"}),
}
HELP = {"-h", "--help"}


def modernise(argv: list[str]) -> tuple[list[str], str | None]:
    """The command line in this release's grammar, and the deprecation note if it was an old spelling."""
    if not argv:
        return argv, None
    head, rest = argv[0], argv[1:]
    new: list[str] | None = None
    if head in RENAMED:
        new = RENAMED[head] + rest
    elif head == "run" and rest[:1] == ["nightly"]:
        new = ["nightly", "run", *rest[1:]]
    elif head in IMPLIED_VERB:
        verb, verbs = IMPLIED_VERB[head]
        if not rest or (rest[0] not in verbs and rest[0] not in HELP):
            new = [head, verb, *rest]
    if new is None:
        return argv, None
    old = "run nightly" if head == "run" else head  # command words only: the arguments may be paths
    now = " ".join(new[:2])
    return new, f"note: `./slm {old}` is deprecated; use `./slm {now}` (the old spelling goes in 0.3)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slm", description="Service-level management platform")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)

    from slm_platform.ops import doctor  # standard library only: ./slm runs it with python3, envs or not

    s = sub.add_parser("doctor", help="what is missing or broken in the set-up, and the command fixing it")
    doctor.add_arguments(s)
    s.set_defaults(func=lambda a: doctor.run(a.before_envs, a.purpose))
    return p


def main(argv: list[str] | None = None) -> int:
    argv, note = modernise(list(sys.argv[1:] if argv is None else argv))
    if note:
        print(note, file=sys.stderr)
    args = build_parser().parse_args(argv)
    from slm_platform.transform.dbt_runner import DbtError

    try:
        return args.func(args)
    except (StackError, DbtError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
