"""Pre-processing: the paper's tabular equations (1)–(4) (:mod:`.tabular`) and the radiograph
pre-processing of its Figure 4(b) (:mod:`.radiograph`)."""

from bonetumor.preprocess.radiograph import preprocess_radiograph, radiograph_stats, read_grayscale
from bonetumor.preprocess.tabular import mean_impute, min_max_scale, one_hot, z_score

__all__ = ["mean_impute", "min_max_scale", "one_hot", "z_score", "preprocess_radiograph", "radiograph_stats",
           "read_grayscale"]
