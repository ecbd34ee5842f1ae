"""The ``trainops`` command: ``bench`` (the main job), ``info`` and ``diagnose``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    # Modules, not the same-named functions trainops/__init__ exports.
    bench = importlib.import_module("trainops.bench")
    info = importlib.import_module("trainops.info")
    diagnose = importlib.import_module("trainops.diagnose")

    bench.add_arguments(
        sub.add_parser(
            "bench", help="benchmark trainops against torch on the local device", description=bench.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    info.add_arguments(sub.add_parser("info", help="versions and compiled backends"))
    diagnose.add_arguments(sub.add_parser("diagnose", help="diagnose a train/validation loss curve"))
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        if sys.stdout is not None:  # None when the process started with stdout closed
            sys.stdout.flush()  # here, not at exit, where a closed pipe could no longer be caught
        return code
    except BrokenPipeError:
        # A reader went away (`trainops info | head -1`): stop quietly, as shell
        # tools do, with the status of a process killed by SIGPIPE. stdout goes to
        # /dev/null so that the interpreter's own flush at exit cannot fail again.
        if sys.stdout is not None:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
