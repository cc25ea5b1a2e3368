# TRANSITIONAL SHIM: training moved to bonetumor.engine (and checkpoints to bonetumor.modeling.checkpoints);
# the lead removes this module.
"""Old import path of training (re-exports only): :mod:`bonetumor.engine.trainer` and its pieces,
:mod:`bonetumor.modeling.checkpoints`. Note: ``checkpoint_state`` now takes the RNG state dict
(``rng=rng_state(loader_generator)``) instead of the loader generator."""

from bonetumor.devices import device_for  # noqa: F401
from bonetumor.engine.determinism import (deterministic_algorithms, isolated_rng, rng_state,  # noqa: F401
                                          seed_everything, set_rng_state)
from bonetumor.engine.loop import NonFiniteLossError, make_loader, train_one_epoch  # noqa: F401
from bonetumor.engine.loop import to_device as _to_device  # noqa: F401
from bonetumor.engine.progress import duration as _duration  # noqa: F401
from bonetumor.engine.progress import epoch_line as _epoch_line  # noqa: F401
from bonetumor.engine.progress import resolve_progress as _resolve_progress  # noqa: F401
from bonetumor.engine.resume import RESUMABLE_CHANGES  # noqa: F401
from bonetumor.engine.resume import settings_differences as _settings_differences  # noqa: F401
from bonetumor.engine.run_files import device_info as _device_info  # noqa: F401
from bonetumor.engine.run_files import now as _now  # noqa: F401
from bonetumor.engine.run_files import summary as _summary  # noqa: F401
from bonetumor.engine.run_files import write_history as _write_history  # noqa: F401
from bonetumor.engine.schedule import (MULTISTEP_MILESTONES, WARMUP_START, lr_factor, make_optimizer,  # noqa: F401
                                       make_scheduler)
from bonetumor.engine.trainer import WORST, _best_score, train  # noqa: F401
from bonetumor.engine.validation import MSE_SCORE_THRESHOLD, mask_mse, probability_map, validate  # noqa: F401
from bonetumor.engine.validation import VAL_SEED_OFFSET as _VAL_SEED_OFFSET  # noqa: F401
from bonetumor.engine.validation import _batchnorm_eval, _mask_squared_error  # noqa: F401
from bonetumor.modeling.checkpoints import (CHECKPOINT_FORMAT, checkpoint_state, load_checkpoint,  # noqa: F401
                                            load_model, save_checkpoint)
from bonetumor.modeling.checkpoints import save_safetensors as _save_safetensors  # noqa: F401
from bonetumor.modeling.vgg_maskrcnn import LOSS_TERMS, bf16_backbone, build_model  # noqa: F401
from bonetumor.versioning import code_state  # noqa: F401
