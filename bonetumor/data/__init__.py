"""Data layer: the BTXRD reader, the synthetic phantom (which writes the BTXRD layout), COCO export, splits,
the clinical table and the torch Dataset.

=====================  ===================================================================================
module                 holds
=====================  ===================================================================================
:mod:`.layout`         the BTXRD layout's vocabulary: the sheet's 37 columns, subtypes and their classes
:mod:`.btxrd`          a BTXRD-layout folder → records (sheet, LabelMe, image probing), resize cache, download
:mod:`.phantom`        synthetic radiographs + LabelMe + sheet in the BTXRD layout, deterministic from a seed
:mod:`.coco`           the one ground truth (lesion mask, box, COCO set) scored and exported; mask RLE ↔ polygons
:mod:`.patients`       pseudo-patients, near-duplicate images and their connected components
:mod:`.splits`         grouped / centre splits over those components, and the split report
:mod:`.clinical`       the Kaggle clinical CSV
:mod:`.dataset`        the torch Dataset and paired transforms
=====================  ===================================================================================

A *record* is a plain dict describing one image (the detectron2 "dataset dict" idea); pixels are read
in the Dataset, never before::

    {
      "image_id": 1,                      # COCO id, from 1, stable (order of the sheet)
      "name": "IMG000001",                # the sheet's image_id without extension
      "file": "/abs/path/images/IMG000001.jpeg",
      "width": 3213, "height": 2397,      # of the file on disk
      "label": "normal" | "benign" | "malignant",
      "subtype": "osteosarcoma" | None,
      "centre": 1, "age": 14, "gender": "M" | "F",
      "site": "femur", "view": "frontal" | "lateral" | "oblique",
      "patient": "P00001",                # pseudo-patient (bonetumor.data.patients)
      "lesions": [                        # empty for normal images
        {"category": "malignant", "subtype": "osteosarcoma",
         "box": [x0, y0, x1, y1],         # XYXY, pixels of the file on disk
         "polygons": [[x0, y0, x1, y1, ...], ...]},
      ],
    }
"""
