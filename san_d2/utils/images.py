"""Reading pictures as (H, W, 3) uint8 RGB, whatever they come as.

The reader is the torch-free runtime's (``san_d2_runtime``), so that both read a picture alike.
"""
from san_d2_runtime.images import ImageInput
from san_d2_runtime.images import read_rgb as load_rgb_image

__all__ = ["ImageInput", "load_rgb_image"]
