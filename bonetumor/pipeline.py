"""The steps the notebooks and the CLI share, each done once and reused: the dataset (phantom generated
when missing), its records and splits, the trained run, the saved predictions."""

from __future__ import annotations

from pathlib import Path

from bonetumor.config import Settings


def ensure_dataset(settings: Settings, progress: bool = True) -> Path:
    """The dataset folder of ``settings``; the phantom is generated there first if it is not complete."""
    root = settings.data_path
    if settings.data.source == "btxrd":
        if not root.exists():
            raise FileNotFoundError(f"BTXRD folder {root} does not exist (download it: bonetumor data download btxrd)")
        return root
    if not (root / "dataset.xlsx").is_file():
        from bonetumor.data import phantom

        phantom.generate(root, n_images=settings.data.phantom_images, seed=settings.seed,
                         size=settings.data.phantom_size, progress=progress)
    return root
