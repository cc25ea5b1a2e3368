"""``bonetumor paper``: run the ordered notebooks headless (what ``make paper`` calls)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    from bonetumor.config import PROFILES

    parser = subparsers.add_parser("paper", help="run notebooks/NN_*.ipynb in order with papermill")
    parser.add_argument("--profile", choices=PROFILES,
                        help="run profile (default: full when CUDA is available, else quick; ablations: what "
                             "make ablations runs)")
    parser.add_argument("--data", help="a BTXRD-layout folder (default: the profile's synthetic phantom)")
    parser.add_argument("--clinical-csv", help='the Kaggle "Bone Tumor Dataset.csv", if you have it')
    parser.add_argument("--reports", help="output folder (default: reports/)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                        help="run only these notebooks (names or NN prefixes), still in order")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from bonetumor import paths
    from bonetumor.paper import NotebookFailed, ordered_notebooks, run_paper

    notebooks = ordered_notebooks()
    if args.only:
        wanted = tuple(args.only)
        notebooks = [nb for nb in notebooks if nb.stem in wanted or nb.stem[:2] in wanted or nb.name in wanted]
        if not notebooks:
            raise ValueError(f"--only {' '.join(wanted)} matches no notebook in {paths.NOTEBOOKS}")
    try:
        run_paper(args.profile, args.data, reports=args.reports or paths.REPORTS, notebooks=notebooks,
                  clinical_csv=args.clinical_csv)
    except NotebookFailed as exc:
        print(f"bonetumor paper: FAILED {exc}", file=sys.stderr)
        return 1
    return 0
