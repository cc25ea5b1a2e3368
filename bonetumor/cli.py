"""The ``bonetumor`` command: the notebooks' work without notebooks.

Each sub-command group lives in ``bonetumor/commands/<group>.py`` and exposes ``register(subparsers)``;
a group's handler returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

#: Setting this environment variable to 1 shows full tracebacks, as ``--debug`` does.
DEBUG_ENV = "BONETUMOR_DEBUG"
#: Failures a user can act on (a missing, unreadable or malformed file, a bad value): one line, no traceback.
#: ``json.JSONDecodeError`` and the reader's ``DatasetError`` are ``ValueError``; file problems are ``OSError``.
USER_ERRORS = (OSError, ValueError)

GROUPS = ("architecture", "data", "run", "evaluate", "predict", "paper", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonetumor", description="bonetumor: the notebooks' work without notebooks "
                                     "(data, architecture, train, evaluate, predict, paper).")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of every error (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"bonetumor.commands.{group}").register(sub)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a message comes (``main`` may run again in one
    process with stderr replaced, as under pytest's capture), not as it was when the handler was made."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _show_messages() -> None:
    """The package's informational messages (``bonetumor`` logger, e.g. a reused file) on stderr."""
    logger = logging.getLogger("bonetumor")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("bonetumor: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """The error boundary of every command: a failure of a known kind (:data:`USER_ERRORS`) is printed as
    one line (its message names the file, the problem and what to do) with exit status 2; any other
    exception keeps its traceback, and so does every exception with ``--debug`` or ``BONETUMOR_DEBUG=1``."""
    args = build_parser().parse_args(argv)
    _show_messages()
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"bonetumor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bonetumor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
