# TRANSITIONAL SHIM: bonetumor.evaluate was split into bonetumor.evaluation (metrics), bonetumor.engine.inference
# (predict), bonetumor.data.coco and bonetumor.pipeline (run-level caching); removed before the end
# of the refactor.
from bonetumor import LABEL_TO_ID  # noqa: F401
from bonetumor.data.coco import *  # noqa: F401,F403
from bonetumor.data.coco import CATEGORIES, ID_TO_LABEL, coco_ground_truth, lesion_rle, record_in_frame  # noqa: F401
from bonetumor.engine.inference import predict  # noqa: F401
from bonetumor.evaluation import *  # noqa: F401,F403
from bonetumor.evaluation.predictions import kept_detections as _kept  # noqa: F401
