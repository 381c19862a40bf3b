from .launch import DistributedRunError, launch, plan_launch
from .optim import build_optimizer, build_param_groups, with_full_model_clipping
from .stream import TrainingStream
from .trainer import InferenceMapper, Trainer, records_with_dataset_name

__all__ = ["Trainer", "InferenceMapper", "records_with_dataset_name", "build_optimizer",
           "build_param_groups", "with_full_model_clipping", "launch", "plan_launch",
           "DistributedRunError", "TrainingStream"]
