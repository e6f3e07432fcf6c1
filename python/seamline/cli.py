"""The `seamline` command line.

Exit codes a scheduler can use: 0 clean, 1 drift found, 2 bad input, 3 a store unavailable.
Errors are one line on stderr; `--debug` shows the traceback too.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from seamline.exceptions import SeamlineError, StoreUnavailableError

EXIT_CLEAN, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, StoreUnavailableError):
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


def _demo(args: argparse.Namespace) -> int:
    from seamline import demo

    return demo.run(workdir=args.workdir, stores=not args.arrow_only)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seamline", description="Reconcile the copies of one fact across stores."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a small shop with drift injected, and reconcile it")
    demo.add_argument(
        "--workdir", default="demo-out", help="where the demo writes its files (default: demo-out)"
    )
    demo.add_argument("--arrow-only", action="store_true", help="only the in-memory Arrow/Parquet part")
    demo.set_defaults(run=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except SeamlineError as e:
        if args.debug:
            traceback.print_exc()
        print(f"seamline: error: {e}", file=sys.stderr)
        return exit_code_for(e)
    except KeyboardInterrupt:
        print("seamline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
