"""foveate command line: `foveate read`, `eval`, `bench`, `pages`, `make-model`, `models`, `info`.

Flags mean what llama.cpp's mean where they share a name (-m, --mmproj, -ngl, -c, -t, -n, -b).
"""
from __future__ import annotations

import argparse
import os
import sys

from ...errors import FoveateError
from . import bench, calibrate, info, make_model, models, pages, read, serve
from . import eval as eval_cmd

# the order `foveate -h` lists them in
COMMANDS = (read, bench, make_model, models, pages, eval_cmd, calibrate, serve, info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="foveate", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            title="commands (foveate COMMAND -h for each one's flags)")
    for command in COMMANDS:
        command.add_parser(sub)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except BrokenPipeError:
        # the reader of stdout left (`foveate read doc.pdf | head -3`): stop quietly, as Unix
        # tools do, with the status a SIGPIPE gives; stdout goes to /dev/null so the exit's
        # own flush does not complain
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except ValueError as e:  # bad option values (e.g. --fixation 2)
        print(f"foveate: {e}", file=sys.stderr)
        return 2
    except FoveateError as e:
        print(f"foveate: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
