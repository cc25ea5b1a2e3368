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
=====================  ==================================================================================

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
dates are fixed), so the same seed gives byte-identical files.
"""

from bonetumor.data.layout import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES, SHEET_COLUMNS, SUBTYPES, VIEW_COLUMNS
from bonetumor.data.phantom.plan import (CENTRE_COUNTS, DEFAULT_PROPORTIONS, SITE_LIMB, SITE_TEMPLATES,
                                         SITE_WEIGHTS, SUBTYPE_SITES, SUBTYPE_WEIGHTS, TEMPLATE_JOINT, plan)
from bonetumor.data.phantom.radiograph import CENTRE_STYLE, VIEW_ANGLE, render
from bonetumor.data.phantom.write import LABELME_VERSION, VERSION, generate, labelme, same_phantom

__all__ = ["generate", "same_phantom", "plan", "render", "labelme", "SHEET_COLUMNS", "SUBTYPES", "BENIGN_SUBTYPES",
           "MALIGNANT_SUBTYPES", "VIEW_COLUMNS", "DEFAULT_PROPORTIONS", "SUBTYPE_WEIGHTS", "CENTRE_COUNTS",
           "SITE_WEIGHTS", "SITE_TEMPLATES", "TEMPLATE_JOINT", "SITE_LIMB", "SUBTYPE_SITES", "VIEW_ANGLE",
           "CENTRE_STYLE", "VERSION", "LABELME_VERSION"]
