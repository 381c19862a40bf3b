"""Large output tensors advised to use transparent huge pages."""
import re

import pytest
import torch

from san_d2.utils.memory import _THP_MODE_FILE, empty_for_writing


def _huge_kib(tensor: torch.Tensor) -> int:
    """AnonHugePages (KiB) of this process's mappings that overlap ``tensor``'s memory (the
    advice splits a mapping: its advised part is a mapping of its own)."""
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    total, overlaps = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            bounds = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if bounds:
                overlaps = int(bounds[1], 16) < end and int(bounds[2], 16) > start
            elif overlaps and line.startswith("AnonHugePages:"):
                total += int(line.split()[1])
    return total


def test_small_tensors_are_plain_empty_tensors():
    tensor = empty_for_writing((3, 5), dtype=torch.float64)
    assert tensor.shape == (3, 5) and tensor.dtype == torch.float64


def test_a_large_tensor_is_backed_by_huge_pages_once_written():
    try:
        mode = open(_THP_MODE_FILE).read()
    except OSError:
        pytest.skip("no transparent huge pages on this system")
    if "[madvise]" not in mode:
        pytest.skip(f"transparent huge pages are {mode.strip()!r}, not given on request")
    tensor = empty_for_writing((64, 2**20))  # 256 MiB
    tensor.fill_(1.0)
    assert _huge_kib(tensor) >= 128 * 1024
    plain = torch.empty(64, 2**20)
    plain.fill_(1.0)
    assert _huge_kib(plain) < 128 * 1024  # the difference is the advice
