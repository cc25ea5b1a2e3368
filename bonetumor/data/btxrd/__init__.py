"""The BTXRD reader: a BTXRD-layout folder (the real dataset or the synthetic phantom) → records; a once-only
resize cache; the checksummed download. This package's names are its public API:

=================  ====================================================================================
module             holds
=================  ====================================================================================
:mod:`.read`       :func:`read_dataset` (folder → records, problems), :func:`fingerprint`
:mod:`.sheet`      :func:`read_sheet` (``dataset.xlsx`` → DataFrame), :func:`parse_sheet` (by the rules below)
:mod:`.labelme`    LabelMe JSON → lesions (shapes grouped by the rules below)
:mod:`.images`     the image header probe and :func:`load_image`
:mod:`.files`      the layout's root, sheet and folders; files indexed by id; :func:`find_image`
:mod:`.card`       :func:`summary` and :func:`data_card`
:mod:`.cache`      :func:`resize_records` (the resize cache) and :func:`resized_size`
:mod:`.download`   :func:`download_btxrd`
:mod:`.problems`   :class:`Problem` and :class:`DatasetError`
=================  ====================================================================================

COCO export (:func:`write_coco`, :func:`mask_to_polygons`) lives in :mod:`bonetumor.data.coco` and is
re-exported here.

Layout (Yao et al., Scientific Data 2025; figshare doi 10.6084/m9.figshare.27865398)::

    BTXRD/images/IMG000001.jpeg ...       the sheet may say .jpeg where the file is .jpg, and the reverse
    BTXRD/Annotations/IMG000001.json ...  LabelMe JSON, tumour images only; some zips nest Annotations/Annotations/
    BTXRD/dataset.xlsx                    one row per image, 37 columns (``SHEET_COLUMNS``)

Rules the reader applies (each departure from them is a :class:`Problem`, never a silent change):

* **The sheet decides** an image's class (``normal``/``benign``/``malignant``), subtype, centre, age, gender,
  site and view. A LabelMe ``label`` is a subtype name (``"osteosarcoma"``, ``"other bt"``; a class name is
  accepted too); when it disagrees with the sheet the disagreement is reported and the sheet is used.
* **Images are found by id** under ``images/`` (any depth, hidden files and ``__MACOSX`` ignored), matching the
  sheet's ``image_id`` without its extension. A JSON's ``imagePath`` is never used to open anything.
* **Shapes → lesions.** Shapes that carry a ``group_id`` form one lesion per ``group_id``. Every rectangle
  without a ``group_id`` starts a lesion of its own. Each polygon without a ``group_id`` joins the lesion
  (with a rectangle) that covers the largest fraction of the polygon's bounding box (within 0.05 of the
  largest, e.g. nested rectangles, the one whose IoU with that bounding box is highest); a polygon that
  overlaps no rectangle is a lesion of its own. A lesion's ``box`` is its rectangle (the union, if a group holds
  several), else the bounds of its polygons. A rectangle with no polygon gives a box-only lesion
  (``polygons == []``), which is reported because it has no mask.
* **Coordinates** outside the image are clipped to it and reported. Polygons with fewer than 3 points or no
  area, unsupported shape types and malformed points are reported and skipped.
* **Sites and views** are one-hot columns; when several are set, the names are joined with ``"+"`` in sheet
  column order (e.g. ``"femur+knee-joint"``); none set gives ``None``.
* **Image ids** are the 1-based position of the row in the sheet, so they stay stable when another row is
  dropped. Images that cannot be used are left out of the records, each with a problem saying why: a sheet
  row without an image file, an unreadable or truncated image, a duplicate id, an inconsistent class, a
  tumour image without any usable annotation. Files on disk without a sheet row are reported too.

Records follow :mod:`bonetumor.data`, plus ``annotation`` (the LabelMe file, or ``None``) and, only for a
file with a non-trivial EXIF orientation, ``exif_orientation``. ``patient`` is left ``None`` (the splits
assign it).

Images may be in any format Pillow reads (JPEG, PNG, TIFF, BMP, ...; any bit depth and mode; the content
decides, not the suffix). Pixels are never decoded while reading: the image size comes from the file header
(a JPEG's end-of-image marker is checked, other formats' structure verified; a header larger than Pillow's
decompression-bomb limit is a problem). Width and height are those of the image as displayed, i.e. after
its EXIF orientation, which is the frame LabelMe annotates in; read pixels with :func:`load_image`. Every
image is decoded in full once, when the resize cache is made (:func:`resize_records`): an image that fails
there (e.g. a JPEG cut short but ending in an end marker) is a problem of the dataset and is left out.
"""

from bonetumor.data.btxrd.cache import resize_records, resized_size
from bonetumor.data.btxrd.card import CLASS_NAMES, data_card, summary
from bonetumor.data.btxrd.download import (DOWNLOAD_NAME, FIGSHARE_ARTICLE_URL, FIGSHARE_MD5, FIGSHARE_URL,
                                           DownloadError, download_btxrd)
from bonetumor.data.btxrd.files import IMAGE_SUFFIXES, SHEET_NAMES, find_image, find_root
from bonetumor.data.btxrd.images import load_image
from bonetumor.data.btxrd.problems import DatasetError, Problem
from bonetumor.data.btxrd.read import fingerprint, read_dataset
from bonetumor.data.btxrd.sheet import PARSED_COLUMNS, parse_sheet, read_sheet
from bonetumor.data.coco import mask_to_polygons, write_coco
from bonetumor.data.layout import SHEET_COLUMNS, SITE_COLUMNS, SUBTYPE_CLASS, VIEW_COLUMNS
from bonetumor.data.layout import SUBTYPES as SUBTYPE_COLUMNS

__all__ = [
    "read_dataset", "fingerprint", "summary", "data_card", "read_sheet", "parse_sheet", "find_root", "find_image",
    "load_image", "resize_records", "resized_size", "download_btxrd", "write_coco", "mask_to_polygons",
    "Problem", "DatasetError", "DownloadError",
    "SHEET_NAMES", "SHEET_COLUMNS", "SITE_COLUMNS", "VIEW_COLUMNS", "SUBTYPE_COLUMNS", "SUBTYPE_CLASS",
    "IMAGE_SUFFIXES", "CLASS_NAMES", "PARSED_COLUMNS",
    "FIGSHARE_URL", "FIGSHARE_MD5", "FIGSHARE_ARTICLE_URL", "DOWNLOAD_NAME",
]
