"""python -m wlnet run net.wl: evaluate a file of Wolfram statements and print the last value.

    python -m wlnet run net.wl            # the value of the last statement
    python -m wlnet run net.wl -e 'x = 3' # statements run first (data, sizes)

A net, a NetTrainResultsObject or a NetStateObject prints its summary; other values print as
Wolfram input form (lists, numbers, strings, associations as lists of rules).
"""

from __future__ import annotations

import argparse
import sys


def _show(value) -> str:
    from .core.net import Net
    from .wolfram import to_wolfram

    if value is None:
        return ""
    if isinstance(value, Net) or type(value).__name__ in ("NetTrainResultsObject", "NetStateObject"):
        return repr(value)
    try:
        return to_wolfram(value)
    except Exception:  # a value with no Wolfram form (a figure, ...) prints as Python shows it
        return repr(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wlnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate a .wl file of Wolfram statements and print the last value")
    run.add_argument("file", help="a file of Wolfram code (- for standard input)")
    run.add_argument("-e", "--eval", action="append", default=[], metavar="CODE",
                     help="Wolfram statements evaluated before the file (repeatable)")
    args = parser.parse_args(argv)

    from .core.errors import NetError
    from .wolfram.evaluate import evaluate_in

    try:
        code = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except OSError as e:
        print(f"wlnet run: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    env: dict = {}
    try:
        for statements in args.eval:
            evaluate_in(statements, env)
        value = evaluate_in(code, env)
    except NetError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    text = _show(value)
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
