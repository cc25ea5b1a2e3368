"""Data layer: the BTXRD reader, the synthetic phantom (which writes the BTXRD layout), splits, the
clinical table and the torch Dataset.

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
      "patient": "P00001",                # pseudo-patient (bonetumor.data.splits)
      "lesions": [                        # empty for normal images
        {"category": "malignant", "subtype": "osteosarcoma",
         "box": [x0, y0, x1, y1],         # XYXY, pixels of the file on disk
         "polygons": [[x0, y0, x1, y1, ...], ...]},
      ],
    }
"""
