"""``bonetumor data …``: read, summarise, generate and download the data.

    bonetumor data summary PATH [--json] [--strict]      a BTXRD-layout folder (or its parent)
    bonetumor data clinical CSV [--json]                  the Kaggle clinical CSV the paper names
    bonetumor data phantom OUT --images N --seed S --size PX [--version 2]
    bonetumor data download btxrd [--dest DIR] [--url URL] [--md5 MD5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="read, summarise, generate or download data",
                                   description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = sub.add_parser("summary", help="counts and problems of a BTXRD-layout folder")
    p.add_argument("path", help="the BTXRD folder or the folder that holds BTXRD/")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--strict", action="store_true", help="fail (exit 2) when any problem is found")
    p.set_defaults(handler=_summary)

    p = sub.add_parser("clinical", help="load and check the Kaggle 'Bone Tumor' clinical CSV")
    p.add_argument("csv", help="path to 'Bone Tumor Dataset.csv'")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_clinical)

    p = sub.add_parser("phantom", help="write a synthetic radiograph phantom in the BTXRD layout")
    p.add_argument("out", help="folder to write")
    p.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="longest image side in pixels (default 512)")
    p.add_argument("--version", type=int, choices=(1, 2), default=2,
                   help="1: idealised long bones; 2 (default, as every profile): BTXRD's site mix, overlapping "
                        "bones, distractors, lesion sizes as measured on BTXRD, subtle lesions")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier phantom of other settings in OUT (a folder that holds no phantom "
                        "is never replaced)")
    p.set_defaults(handler=_phantom)

    p = sub.add_parser("download", help="download a public dataset (checksummed)")
    p.add_argument("dataset", choices=["btxrd"], help="which dataset")
    p.add_argument("--dest", default=None, help="folder to download and unzip into (default data/)")
    p.add_argument("--url", default=None, help="download URL (default: the BTXRD.zip file of figshare "
                                               "article doi 10.6084/m9.figshare.27865398)")
    p.add_argument("--md5", default=None, help="expected MD5 of the zip ('none' skips the check; default the "
                                               "published one)")
    p.set_defaults(handler=_download)


def _summary(args: argparse.Namespace) -> int:
    from bonetumor.data import btxrd

    records, problems = btxrd.read_dataset(args.path, strict=args.strict)
    info = btxrd.summary(records, problems)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    root = btxrd.find_root(args.path)
    classes = ", ".join(f"{k} {v}" for k, v in info["classes"].items())
    centres = ", ".join(f"{k}: {v}" for k, v in info["centres"].items())
    print(f"{root}")
    print(f"  images            {info['images']} ({classes})")
    print(f"  centres           {centres}")
    print(f"  annotated images  {info['annotated_images']}")
    print(f"  lesions           {info['lesions']}")
    print(f"  problems          {len(problems)}")
    for line in info["problems"]:
        print(f"    - {line}")
    return 0


def _clinical(args: argparse.Namespace) -> int:
    from bonetumor.data.clinical import load_clinical

    frame, problems = load_clinical(args.csv)
    info = {"rows": int(len(frame)), "columns": [str(c) for c in frame.columns], "problems": list(map(str, problems))}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.csv}")
    print(f"  rows      {info['rows']}")
    print(f"  columns   {len(info['columns'])}: {', '.join(info['columns'])}")
    print(f"  problems  {len(info['problems'])}")
    for line in info["problems"]:
        print(f"    - {line}")
    return 0


def _phantom(args: argparse.Namespace) -> int:
    from bonetumor.data import btxrd, phantom

    for name in ("images", "size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be positive, not {getattr(args, name)}")
    out = Path(args.out)
    if phantom.same_phantom(out, n_images=args.images, seed=args.seed, size=args.size, version=args.version):
        verb = "already holds"
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
            earlier = out.is_dir() and (out / "phantom.json").is_file()
            raise FileExistsError(f"{out}: already exists and "
                                  + ("holds a phantom of other settings; pass --force to replace it, or choose "
                                     "another folder" if earlier else
                                     "is not an empty folder; choose another folder (it is never replaced)"))
        phantom.generate(out, n_images=args.images, seed=args.seed, size=args.size, overwrite=args.force,
                         version=args.version)
        verb = "wrote"
    records, problems = btxrd.read_dataset(args.out)
    info = btxrd.summary(records, problems)
    print(f"{verb} a synthetic phantom {'in' if verb != 'wrote' else 'to'} {args.out}: {info['images']} images "
          f"({', '.join(f'{k} {v}' for k, v in info['classes'].items())}), {info['lesions']} lesions")
    if problems:
        print(f"the BTXRD reader finds {len(problems)} problem(s) in it:", file=sys.stderr)
        for line in info["problems"]:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return 0


def _download(args: argparse.Namespace) -> int:
    from bonetumor.data import btxrd

    kwargs = {}
    if args.url:
        kwargs["url"] = args.url
    if args.md5:
        kwargs["md5"] = None if args.md5.lower() == "none" else args.md5
    try:
        root = btxrd.download_btxrd(args.dest, **kwargs)
    except btxrd.DownloadError as exc:
        print(f"bonetumor: error: {exc}", file=sys.stderr)
        return 1
    print(root)
    return 0
