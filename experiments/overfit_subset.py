"""Can the quick recipe fit a few training images at all? — the sanity check for the recipe log (issue 12).

Trains the quick profile's detector on the first ``--images`` tumour images (and ``--normals`` normal
images) of the phantom's *training* split and validates on those same images (no augmentation there), so the per-epoch AP50 is training-set
AP50. A recipe that cannot reach a high AP50 on a few images it sees every epoch has an optimisation or
signal problem, not a generalisation one. No validation or test image is used.

    python experiments/overfit_subset.py RUN [--images 32] [--normals 0] [--epochs 60] [--set KEY=VALUE ...]
"""

import argparse

from bonetumor import config, pipeline
from bonetumor.commands.run import _parse_overrides
from bonetumor.data.dataset import BoneTumourDataset
from bonetumor.engine import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--normals", type=int, default=0, help="also this many normal training images")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--augment", action="store_true", help="augment the training images (default: off)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    overrides = _parse_overrides(args.set + [f"train.epochs={args.epochs}"])
    settings = config.load("quick", overrides)
    prepared = pipeline.prepare(settings, progress=False)
    train_records = prepared.splits["train"]
    subset = ([r for r in train_records if r["label"] != "normal"][: args.images]
              + [r for r in train_records if r["label"] == "normal"][: args.normals])
    lesions = sum(len(r["lesions"]) for r in subset)
    print(f"{len(subset) - args.normals} training tumour images ({lesions} lesions) and {args.normals} normal ones; "
          f"{settings.tag()}")
    mean, std = pipeline.normalisation(subset)
    summary = train(settings, BoneTumourDataset(subset, train=True, augment=args.augment),
                    BoneTumourDataset(subset, train=False), args.run, mean, std, progress=False,
                    val_metrics_fn=pipeline.validation_metrics(settings))
    print(summary)


if __name__ == "__main__":
    main()
