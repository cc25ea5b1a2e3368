"""Set up JupyterLab for this project (``make env`` runs ``install``) or strip the tracked notebooks.

    python tools/lab_setup.py install        # git filter + Jupyter server config of this environment
    python tools/lab_setup.py strip FILE...  # what `make strip` runs

See :mod:`bonetumor.lab` for what the two do and why both are needed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bonetumor import lab

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("install", help="define the nbstripout git filter and install the Jupyter server config")
    strip = sub.add_parser("strip", help="strip outputs from notebooks in place")
    strip.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.action == "strip":
        return subprocess.run(lab.nbstripout_command(*args.files)).returncode
    config = lab.install_server_config()
    print(f"lab: Jupyter server config {config}")
    if lab.install_git_filter(ROOT):
        print("lab: git filter nbstripout defined for notebooks/*.ipynb (.gitattributes)")
    else:
        print("lab: not a git checkout, no git filter defined")
    return 0


if __name__ == "__main__":
    sys.exit(main())
