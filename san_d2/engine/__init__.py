from .optim import build_optimizer, build_param_groups, with_full_model_clipping
from .trainer import InferenceMapper, Trainer, records_with_dataset_name

__all__ = ["Trainer", "InferenceMapper", "records_with_dataset_name", "build_optimizer",
           "build_param_groups", "with_full_model_clipping"]
