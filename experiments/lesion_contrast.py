"""How visible phantom v2's lesions are: each image rendered twice, with its planned conspicuity and with
conspicuity 0 (same random numbers, so the difference is the lesion alone after the detector), and inside
each lesion's mask the mean absolute grey-level difference and that difference over the grey-level standard
deviation of the lesion-free image there (a contrast-to-anatomy ratio).

    python experiments/lesion_contrast.py [--images 600] [--size 384]
"""

import argparse
import copy

import numpy as np
import pandas as pd

from bonetumor.data.phantom import radiograph_v2
from bonetumor.data.phantom.plan_v2 import plan_v2


def lesion_contrast(n_images: int, size: int, seed: int = 0) -> pd.DataFrame:
    rows = []
    for entry in plan_v2(n_images, seed):
        if not entry["lesions"]:
            continue
        image, lesions = radiograph_v2.render(entry, size)
        blank = copy.deepcopy(entry)
        for spec in blank["lesions"]:
            spec["conspicuity"] = 0.0
        background = radiograph_v2.render(blank, size)[0].astype(float)
        difference = np.abs(image.astype(float) - background)
        for spec, lesion in zip(entry["lesions"], lesions):
            mask = lesion["mask"]
            rows.append({"label": entry["label"], "subtype": entry["subtype"], "conspicuity": spec["conspicuity"],
                         "side_px": float(np.sqrt(mask.sum())), "mean_abs_grey": difference[mask].mean(),
                         "contrast_to_anatomy": difference[mask].mean() / (background[mask].std() + 1.0)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args()
    table = lesion_contrast(args.images, args.size)
    quantiles = table.groupby("label")[["conspicuity", "side_px", "mean_abs_grey", "contrast_to_anatomy"]] \
        .quantile([0.1, 0.25, 0.5, 0.75, 0.9]).round(3)
    print(quantiles.to_string())
    print(f"lesions: {len(table)}; mean |difference| < 2 grey levels: {(table.mean_abs_grey < 2).mean():.1%}, "
          f"< 5: {(table.mean_abs_grey < 5).mean():.1%}")


if __name__ == "__main__":
    main()
