"""Device selection for san_d2's entry points."""
import logging

import torch
from detectron2.config import CfgNode

logger = logging.getLogger(__name__)


def fall_back_to_cpu_without_cuda(cfg: CfgNode) -> str:
    """Sets ``cfg.MODEL.DEVICE`` to "cpu" when it asks for CUDA and none is available.

    detectron2's default device is "cuda", so every published config would otherwise fail on a
    machine without a GPU. The switch is logged. The config must not be frozen.

    Returns:
        The device the run will use.
    """
    requested = cfg.MODEL.DEVICE
    if requested.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        logger.warning(
            "MODEL.DEVICE is %r but CUDA is not available: running on CPU instead.", requested
        )
    else:
        logger.info("Running on %s.", requested)
    return cfg.MODEL.DEVICE
