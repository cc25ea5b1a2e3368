"""A synthetic radiograph phantom that writes the BTXRD on-disk layout.

``generate(out, n_images, seed)`` writes::

    out/images/IMG000001.jpeg …        8-bit greyscale JPEG radiographs (longest side = ``size``)
    out/Annotations/IMG000001.json …   LabelMe 5.4.1 files, tumour images only
    out/dataset.xlsx                   sheet "Sheet1", the 37 BTXRD columns, one row per image
    out/phantom.json                   the generator's parameters (provenance; not part of BTXRD)

so that real and synthetic data go through the same reader (:mod:`bonetumor.data.btxrd`).

=====================  ==================================================================================
module                 holds
=====================  ==================================================================================
:mod:`.plan`           what to draw per image, from the seed (:func:`plan`); the BTXRD-like tables
:mod:`.geometry`       the long bone's radius profile, chords, windows, band-pass noise, outlines
:mod:`.anatomy`        the canvas and pose, soft tissue and the bones of each joint region
:mod:`.lesions`        lesion parameters per subtype (per patient)
:mod:`.draw`           drawing each kind of lesion into an image
:mod:`.radiograph`     one image from a plan entry (:func:`render`): projection and detector
:mod:`.write`          LabelMe, sheet and JPEG writing; :func:`generate` (the whole folder)
:mod:`.plan_v2`        phantom v2's plan (``plan_v2.plan_v2``): site mix, lesion sizes/counts/conspicuity, distractors
:mod:`.anatomy_v2`     v2's multi-bone regions: hand, foot, pelvis, patella
:mod:`.lesions_v2`     v2's lesions, drawn at the planned box size, contrast × conspicuity
:mod:`.distractors`    v2's label-free objects: R/L letters, rulers, markers, burnt-in text
:mod:`.radiograph_v2`  one v2 image (:func:`render_v2`): region, collimation, lesions, scatter, detector
:mod:`.realism`        the realism card (phantom beside measured BTXRD facts), the histogram shortcut check
=====================  ==================================================================================

Phantom v2 (``generate(..., version=2)``)
-----------------------------------------
Version 1 (the default, byte-identical to earlier releases) is too easy a proxy: a recipe that fails on real
radiographs learns it (issue 12). Version 2 is hard where real BTXRD is hard:

* *Anatomy*: BTXRD's sites — femur, tibia, fibula, humerus, radius, ulna, **hand, foot, hip bone** — with
  chosen proportions (DATASETS.md gives none; see :data:`.plan_v2.SITE_WEIGHTS`), multi-bone regions whose
  bones overlap (hand: carpals, metacarpals, phalanges; foot; knee with its patella; pelvis), soft tissue,
  a zoom range 0.55–1.4 × version 1's, collimation (white or black shutters up to 18 % per edge), scatter,
  wider exposure, noise, window and gamma ranges.
* *Lesions*: box sizes drawn from a two-piece log-normal fitted to the measured BTXRD percentiles per class
  (width, height, area as a fraction of the image side, DATASETS.md §4); 1–5 lesions for multiple
  osteochondromas, 1–2 for malignant, as counted on BTXRD; per-subtype appearance with **conspicuity**
  (0.1–1, per lesion) scaling every contrast the lesion adds or removes — 1 is version 1's textbook
  contrast, 0.3 a faint lucency or small exostosis, 0.1 next to invisible.
* *Distractors* carrying no label: laterality letters (lead or burnt in), rulers, calibration balls, arrows,
  burnt-in text, drawn from their own generator (``SeedSequence([seed, 3, key])``), which never sees the class.
* The layout, determinism (byte-identical per seed), planted duplicates and speed (about 1.1 × version 1's)
  are kept; :func:`.realism.realism_card` compares a dataset's facts with BTXRD's.

How an image is made
--------------------
*Anatomy.* Each image shows one joint region of a limb (knee, hip, ankle, shoulder, elbow, wrist): the
"target" long bone (the sheet's site: femur, tibia, fibula, humerus, radius or ulna; with its pair bone for
the leg and forearm), across a joint gap the partner bone(s) or a carpal/tarsal/glenoid/acetabular block, all
inside a soft-tissue envelope (muscle core + subcutaneous fat). A long bone is a solid of revolution with a
radius profile: a domed epiphysis, a flaring metaphysis and a tubular diaphysis; a cortical shell (thick in
the diaphysis, thin at the ends) around a medullary cavity whose cancellous density is high at the ends and
carries band-pass trabecular texture. Children (age < 16) show an open growth plate.

*Projection.* Each structure contributes its projected path length ``t`` (chord of a cylinder or ellipsoid
at the pixel's distance from its axis) times a linear attenuation coefficient; the detector sees
``I = I0 · exp(−Σ μ·t)`` (Beer–Lambert) with a heel-effect gradient, quantum (Poisson, normal approximation)
noise, scintillator blur, then the log image is edge-enhanced (unsharp mask, like DR post-processing) and
windowed with a random level, width and gamma. Optional collimator shutters. Exposure, pose, scale, aspect
ratio, side, view and orientation are drawn independently of the lesion class.

*Lesions* are drawn in the target bone's coordinates with the radiological signs that separate the classes:

=========================  ==========================================================================
subtype                    appearance
=========================  ==========================================================================
osteochondroma             exostosis from the metaphysis pointing away from the joint, cortex and
                           medulla continuous with the parent bone (pedunculated or sessile)
multiple osteochondromas   2–4 exostoses, widened metaphysis
simple bone cyst           central metaphyseal lucency, well defined, thin sclerotic rim
giant cell tumor           eccentric epiphyseal-metaphyseal lucency reaching the joint surface,
                           multiloculated ("soap bubble") septa, expanded thin cortex, no thick rim
osteofibroma               diaphyseal intracortical multiloculated lucency with sclerotic margins
synovial osteochondroma    cluster of ring-calcified loose bodies in the joint
other bt                   eccentric lobulated lucency with a thick sclerotic (scalloped) rim
osteosarcoma               metaphyseal, mixed lytic/sclerotic, ill-defined (wide zone of transition),
                           moth-eaten margin, sunburst spicules and/or Codman triangle, soft-tissue
                           mass with cloud-like tumour bone
other mt                   diaphyseal permeative destruction, lamellated ("onion skin") or hair-on-end
                           periosteal reaction, Codman triangle, soft-tissue mass
=========================  ==========================================================================

Benign lesions have narrow zones of transition and (mostly) sclerotic rims; malignant ones wide zones of
transition, aggressive periosteal reaction and a soft-tissue mass. The mask (LabelMe polygon) covers the
lesion including any soft-tissue mass; the rectangle is the polygon's bounds.

*Sheet.* Patients come as runs of consecutive ids (1–3 views, about 75 % of images in multi-view runs) with
the same centre, age, gender, site and lesion; BTXRD-like class × centre proportions, subtype frequencies
and ages. About 1 % of images are near-duplicates (an earlier image re-saved with another JPEG quality).

*Determinism.* The plan (patients, classes, views) comes from ``SeedSequence([seed, 0])``; an image's pixels
from ``SeedSequence([seed, 1, patient])`` (anatomy and lesion, shared by the patient's views) and
``SeedSequence([seed, 2, index])`` (pose, exposure, noise), so images do not depend on generation order or
on the number of worker processes. JPEG and xlsx bytes are reproducible (zip timestamps and document
dates are fixed), so the same seed gives byte-identical files on hosts whose NumPy dispatches to the same
vector instructions: NumPy's AVX-512 maths differ from its AVX2 maths in the last bits, which moved 53 pixels
of 1 image and 4 annotation polygons of the 600-image quick phantom (seed 0).
"""

from bonetumor.data.layout import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES, SHEET_COLUMNS, SUBTYPES, VIEW_COLUMNS
from bonetumor.data.phantom.plan import (CENTRE_COUNTS, DEFAULT_PROPORTIONS, SITE_LIMB, SITE_TEMPLATES,
                                         SITE_WEIGHTS, SUBTYPE_SITES, SUBTYPE_WEIGHTS, TEMPLATE_JOINT, plan)
from bonetumor.data.phantom.radiograph import CENTRE_STYLE, VIEW_ANGLE, render
from bonetumor.data.phantom.radiograph_v2 import render as render_v2
from bonetumor.data.phantom.realism import BTXRD_FACTS, histogram_shortcut, realism_card
from bonetumor.data.phantom.write import LABELME_VERSION, VERSION, VERSIONS, generate, labelme, same_phantom

__all__ = ["generate", "same_phantom", "plan", "render", "labelme", "SHEET_COLUMNS", "SUBTYPES", "BENIGN_SUBTYPES",
           "MALIGNANT_SUBTYPES", "VIEW_COLUMNS", "DEFAULT_PROPORTIONS", "SUBTYPE_WEIGHTS", "CENTRE_COUNTS",
           "SITE_WEIGHTS", "SITE_TEMPLATES", "TEMPLATE_JOINT", "SITE_LIMB", "SUBTYPE_SITES", "VIEW_ANGLE",
           "CENTRE_STYLE", "VERSION", "LABELME_VERSION", "VERSIONS", "render_v2", "realism_card",
           "histogram_shortcut", "BTXRD_FACTS"]
