"""``bonetumor bench``: how fast this project trains and predicts, against what.

In one process, on one seeded synthetic batch, side by side:

* (a) **stock** — the same VGG-19 Mask R-CNN (same widths, anchors, proposal and RoI counts, same weights)
  composed the way torchvision's documentation composes a custom-backbone ``MaskRCNN``, float32, torchvision's
  default ops, trained by torchvision's reference step (forward, backward, optimizer step);
* (b) **project** — :func:`bonetumor.modeling.build_model` with the profile's settings, trained by
  :func:`bonetumor.engine.loop.train_one_epoch` and run for inference under the project's precision choice
  (:func:`bonetumor.modeling.vgg_maskrcnn.autocast_wanted`);
* (c) **bound** — (b)'s backbone alone, forward and backward: what the detector would cost if its heads were free.

:mod:`~bonetumor.benchmark.workload` builds the batch and the models, :mod:`~bonetumor.benchmark.measure`
times them (warm-up excluded, repetitions interleaved so that a noisy machine slows all alike) and
:mod:`~bonetumor.benchmark.report` prints and writes the table.
"""

from bonetumor.benchmark.measure import benchmark, loader_rate
from bonetumor.benchmark.report import format_text, rows, write_tables
from bonetumor.benchmark.workload import fast_path, stock_model, synthetic_batch

__all__ = ["benchmark", "fast_path", "format_text", "loader_rate", "rows", "stock_model", "synthetic_batch",
           "write_tables"]
