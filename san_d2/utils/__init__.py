from .device import fall_back_to_cpu_without_cuda

__all__ = ["fall_back_to_cpu_without_cuda"]
