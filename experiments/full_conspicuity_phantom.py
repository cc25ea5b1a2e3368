"""Phantom v2 with every lesion at (nearly) full conspicuity — a diagnostic for the recipe log, not a profile.

Separates "the lesions are too subtle" from "v2's anatomy, sizes and distractors are hard": the same 600
images, seed and sizes as the quick profile's phantom v2, only the conspicuity draw replaced (c ≈ 0.995).

    python experiments/full_conspicuity_phantom.py OUT
    bonetumor train --profile quick --data OUT --out RUN      # read as a BTXRD-layout folder
"""

import sys
from pathlib import Path

from bonetumor.data import phantom
from bonetumor.data.phantom import plan_v2

plan_v2.CONSPICUITY_BETA = {"benign": (200.0, 1.0), "malignant": (200.0, 1.0)}

if __name__ == "__main__":
    phantom.generate(Path(sys.argv[1]), 600, seed=0, size=384, version=2)
