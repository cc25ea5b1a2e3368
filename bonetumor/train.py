"""The module ``torchrun`` starts on every process: ``torchrun --nproc-per-node N -m bonetumor.train``
followed by the options of ``bonetumor train`` (``--profile``, ``--set``, ``--out``, ``--resume``, …), which
:mod:`bonetumor.commands.run` defines and runs. Each process trains its share with DistributedDataParallel
(:mod:`bonetumor.engine.distributed`); rank 0 prints and writes the run folder. ``bonetumor train --nproc N``
starts the same on one machine.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``bonetumor train``'s options and train. A failure a user can act on (a bad value, a missing
    file) is one line with exit status 2, as in ``bonetumor``'s own error boundary."""
    from bonetumor.commands import run

    parser = argparse.ArgumentParser(prog="python -m bonetumor.train", description=run.TRAIN_DESCRIPTION)
    run.add_train_options(parser)
    args = parser.parse_args(argv)
    try:
        return run.train_command(args)
    except (OSError, ValueError) as exc:
        print(f"bonetumor: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
