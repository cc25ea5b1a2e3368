"""bonetumor: reproducible companion to a VGG-19 Mask R-CNN paper on bone tumours in radiographs.

The notebooks in ``notebooks/`` call this package; the package never imports the notebooks.
"""

__version__ = "0.1.0"

#: Class names in model-label order (0 is background, as in torchvision's detection models).
CLASSES = ("background", "benign", "malignant")
#: Image-level labels used by the records; "normal" images carry no lesion.
IMAGE_LABELS = ("normal", "benign", "malignant")
LABEL_TO_ID = {"benign": 1, "malignant": 2}
ID_TO_LABEL = {v: k for k, v in LABEL_TO_ID.items()}
