"""Large CPU tensors that are cheap to write for the first time.

A fresh tensor of a few hundred MB (SAN's (K, H, W) scores) comes from new pages of the
kernel: writing it the first time takes one page fault per 4 KiB page. Where Linux keeps
transparent huge pages for regions that ask for them (``/sys/kernel/mm/transparent_hugepage/
enabled`` set to ``madvise``, a common default), advising the tensor's memory before it is
written replaces 512 of those faults with one: filling a 280 MB tensor took 124 ms with 4 KiB
pages and 34 ms with huge pages on a 2-core Xeon.
"""
import ctypes
import functools
import sys
from typing import Sequence

import torch

__all__ = ["empty_for_writing"]

_HUGE_PAGE = 2 * 2**20
_MADV_HUGEPAGE = 14
# Below this size the faults cost little and the tensor may share pages with others.
_MIN_ADVISED_BYTES = 8 * _HUGE_PAGE
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


@functools.lru_cache(maxsize=None)
def _madvise():
    """libc's ``madvise`` when huge pages are given on request (mode ``madvise``), else None:
    with ``always`` the kernel already uses them, with ``never`` it refuses."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(_THP_MODE_FILE) as f:
            if "[madvise]" not in f.read():
                return None
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


def _advise_huge_pages(tensor: torch.Tensor) -> None:
    """Asks for huge pages over the whole 2 MiB-aligned pages inside ``tensor``'s memory."""
    madvise = _madvise()
    size = tensor.numel() * tensor.element_size()
    if madvise is None or size < _MIN_ADVISED_BYTES:
        return
    start = tensor.data_ptr()
    first = -(-start // _HUGE_PAGE) * _HUGE_PAGE
    last = (start + size) // _HUGE_PAGE * _HUGE_PAGE
    if last > first:
        madvise(first, last - first, _MADV_HUGEPAGE)  # a refusal only costs the speed-up


def empty_for_writing(shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                      device=None) -> torch.Tensor:
    """``torch.empty(shape)``; on CPU, a large tensor's memory is advised to use huge pages
    before anything is written to it (the values are the same, only page faults change)."""
    tensor = torch.empty(tuple(shape), dtype=dtype, device=device)
    if tensor.device.type == "cpu":
        _advise_huge_pages(tensor)
    return tensor
