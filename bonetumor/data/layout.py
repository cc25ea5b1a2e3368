"""The BTXRD on-disk layout's vocabulary (``shared/DATASETS.md``), shared by the reader and the phantom
that writes the same layout: the 37 columns of ``dataset.xlsx`` and the subtype → class map."""

SITE_COLUMNS = ("hand", "ulna", "radius", "humerus", "foot", "tibia", "fibula", "femur", "hip bone", "ankle-joint",
                "knee-joint", "hip-joint", "wrist-joint", "elbow-joint", "shoulder-joint")
BENIGN_SUBTYPES = ("osteochondroma", "multiple osteochondromas", "simple bone cyst", "giant cell tumor",
                   "osteofibroma", "synovial osteochondroma", "other bt")
MALIGNANT_SUBTYPES = ("osteosarcoma", "other mt")
SUBTYPES = BENIGN_SUBTYPES + MALIGNANT_SUBTYPES
SUBTYPE_CLASS = {**{s: "benign" for s in BENIGN_SUBTYPES}, **{s: "malignant" for s in MALIGNANT_SUBTYPES}}
REGION_COLUMNS = ("upper limb", "lower limb", "pelvis")
VIEW_COLUMNS = ("frontal", "lateral", "oblique")
#: The 37 columns of ``dataset.xlsx``, in order.
SHEET_COLUMNS = (("image_id", "center", "age", "gender") + SITE_COLUMNS + ("tumor", "benign", "malignant")
                 + SUBTYPES + REGION_COLUMNS + VIEW_COLUMNS)
assert len(SHEET_COLUMNS) == 37
