"""The ``bonetumor`` command: the notebooks' work without notebooks.

Each sub-command group lives in ``bonetumor/commands/<group>.py`` and exposes ``register(subparsers)``;
a group's handler returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

GROUPS = ("architecture", "data", "run", "evaluate", "predict", "paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonetumor", description="bonetumor: the notebooks' work without notebooks "
                                     "(data, architecture, train, evaluate, predict, paper).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        try:
            module = importlib.import_module(f"bonetumor.commands.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bonetumor.commands.{group}":
                continue
            raise
        module.register(sub)
    return parser


def _show_messages() -> None:
    """The package's informational messages (``bonetumor`` logger, e.g. a reused file) on stderr."""
    logger = logging.getLogger("bonetumor")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bonetumor: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_messages()
    try:
        return int(args.handler(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bonetumor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bonetumor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
