"""san_d2: SAN (Side Adapter Network, CVPR 2023) for open-vocabulary semantic segmentation,
as a detectron2 project.

Importing it registers the ``SAN`` meta-architecture, the side adapter and the benchmarks'
datasets with detectron2.
"""
try:
    import detectron2  # noqa: F401
except ImportError as e:  # detectron2 is not on PyPI, so a plain `pip install` cannot bring it
    raise ImportError(
        "san_d2 needs detectron2, which is not installed in this Python environment "
        f"({e}). From the san_d2 checkout run `make setup` (everything) or "
        "`python tools/install_detectron2.py` (detectron2 v0.6, pure Python, patched for current "
        "numpy and Pillow), or build detectron2 from source."
    ) from e

import warnings

with warnings.catch_warnings():
    # detectron2 0.6 scripts two box-regression helpers when detectron2.modeling is imported,
    # which torch >= 2.10 flags as deprecated: harmless, and nothing a user can act on.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated",
                            category=FutureWarning)
    import detectron2.modeling  # noqa: F401

from .checkpoint import CheckpointMismatchError, SANCheckpointer
from .config import add_san_config, get_san_cfg
from .data import MaskFormerSemanticDatasetMapper, build_train_mapper, load_labelset
from .engine import Trainer
from .model_zoo import get_config_file
from .modeling import SAN, SIDE_ADAPTER_REGISTRY, build_side_adapter_network
from .predictor import SANPredictor, SegmentationResult
from .utils import fall_back_to_cpu_without_cuda

__version__ = "0.1.0"

__all__ = [
    "add_san_config",
    "get_san_cfg",
    "get_config_file",
    "fall_back_to_cpu_without_cuda",
    "SAN",
    "SIDE_ADAPTER_REGISTRY",
    "build_side_adapter_network",
    "CheckpointMismatchError",
    "SANCheckpointer",
    "MaskFormerSemanticDatasetMapper",
    "build_train_mapper",
    "load_labelset",
    "Trainer",
    "SANPredictor",
    "SegmentationResult",
]
