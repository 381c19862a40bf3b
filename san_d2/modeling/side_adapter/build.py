from detectron2.utils.registry import Registry

SIDE_ADAPTER_REGISTRY = Registry("SIDE_ADAPTER")
SIDE_ADAPTER_REGISTRY.__doc__ = """
Registry for side adapter networks: given the image and CLIP's features, they predict mask
proposals and the attention biases that steer CLIP's recognition.

The registered object is called with ``obj(cfg, clip_channels)`` and returns an ``nn.Module``.
"""


def build_side_adapter_network(cfg, clip_channels: int):
    """Builds ``cfg.MODEL.SIDE_ADAPTER.NAME`` for a CLIP of width ``clip_channels``."""
    return SIDE_ADAPTER_REGISTRY.get(cfg.MODEL.SIDE_ADAPTER.NAME)(cfg, clip_channels)
