"""Train the quick recipe on part of the training split — the recipe log's sanity checks (issue 12).

Trains the quick profile's detector on the first ``--images`` tumour images (and ``--normals`` normal
images; ``-1``: all of that class) of the phantom's *training* split, and validates either on those same
images (``--validate same``, no augmentation there: the per-epoch AP50 is training-set AP50 — can the recipe
fit what it sees at all?) or on the whole validation split (``--validate val``: does a detector trained
without normal images generalise?). Never the test split.

    python experiments/train_subset.py RUN [--images 32] [--normals 0] [--epochs 60] [--validate same]
                                           [--augment] [--set KEY=VALUE ...]
"""

import argparse

from bonetumor import config, pipeline
from bonetumor.data.dataset import BoneTumourDataset
from bonetumor.engine import train


def _first(records, n):
    return records if n < 0 else records[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=32, help="tumour images (-1: all)")
    parser.add_argument("--normals", type=int, default=0, help="normal images (-1: all)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--validate", choices=["same", "val"], default="same")
    parser.add_argument("--augment", action="store_true", help="augment the training images (default: off)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    settings = config.load("quick", config.parse_overrides(args.set + [f"train.epochs={args.epochs}"]))
    prepared = pipeline.prepare(settings, progress=False)
    train_records = prepared.splits["train"]
    tumours = _first([r for r in train_records if r["label"] != "normal"], args.images)
    normals = _first([r for r in train_records if r["label"] == "normal"], args.normals)
    subset = tumours + normals
    print(f"{len(tumours)} training tumour images ({sum(len(r['lesions']) for r in tumours)} lesions) and "
          f"{len(normals)} normal ones, validated on {args.validate}; {settings.tag()}")
    mean, std = pipeline.normalisation(subset)
    val_records = subset if args.validate == "same" else prepared.split("val")
    summary = train(settings, BoneTumourDataset(subset, train=True, augment=args.augment),
                    BoneTumourDataset(val_records, train=False), args.run, mean, std, progress=False,
                    val_metrics_fn=pipeline.validation_metrics(settings))
    print(summary)


if __name__ == "__main__":
    main()
