from .clip_loader import LoadedCLIP, load_clip
from .san import SAN
from .side_adapter import SIDE_ADAPTER_REGISTRY, build_side_adapter_network

__all__ = ["SAN", "SIDE_ADAPTER_REGISTRY",
           "build_side_adapter_network", "LoadedCLIP", "load_clip"]
