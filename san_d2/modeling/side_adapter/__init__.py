from .build import SIDE_ADAPTER_REGISTRY, build_side_adapter_network
from .side_adapter import RegionwiseSideAdapterNetwork
from .timm_vit import SIDE_VIT_NAMES, create_side_vit

__all__ = ["SIDE_ADAPTER_REGISTRY", "build_side_adapter_network", "RegionwiseSideAdapterNetwork",
           "SIDE_VIT_NAMES", "create_side_vit"]
