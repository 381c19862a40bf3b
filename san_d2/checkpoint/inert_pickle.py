"""Reading torch files that pickle objects of libraries san_d2 does not need, without them.

mmsegmentation's checkpoints hold mmengine objects (``HistoryBuffer``, whose methods are pickled
as ``builtins.getattr(HistoryBuffer, "min")``) beside the weights, so torch's ``weights_only``
loader refuses them and a full unpickling needs mmengine and runs whatever the file names. This
module is a ``pickle_module`` for ``torch.load`` whose unpickler resolves only what tensors,
numpy arrays and plain containers are made of; every other global becomes an inert placeholder
that records its name and arguments and runs nothing.
"""
import pickle
import pickletools
import zipfile
from typing import Set, Tuple

import numpy as np
import torch

__all__ = ["Unpickler", "load", "InertObject", "pickled_globals"]

_NUMPY_CORE = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
# (module, name) -> the object; what state dicts and numpy arrays are built from.
_SAFE = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): __import__("codecs").encode,  # bytes in protocol-2 pickles
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _core = __import__(_NUMPY_CORE, fromlist=["_reconstruct"])
    _SAFE[(_module, "_reconstruct")] = _core._reconstruct
    _SAFE[(_module, "scalar")] = _core.scalar


class InertObject:
    """Stands in for an object of a global that is not resolved: holds its arguments and
    state, runs nothing."""

    global_name = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.global_name}>"


def _inert(module: str, name: str) -> type:
    return type(f"Inert[{module}.{name}]", (InertObject,), {"global_name": f"{module}.{name}"})


def _resolve(module: str, name: str):
    if (module, name) in _SAFE:
        return _SAFE[(module, name)]
    if module == "torch._utils" and name.startswith("_rebuild_"):  # tensors and parameters
        return getattr(torch._utils, name)
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if module == "numpy.dtypes" and name.endswith("DType"):
        return getattr(np.dtypes, name)
    return None


class Unpickler(pickle.Unpickler):
    """A pickle Unpickler that builds tensors and plain data and keeps the rest inert."""

    def find_class(self, module: str, name: str):
        found = _resolve(module, name)
        return found if found is not None else _inert(module, name)


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()


def pickled_globals(path: str) -> Set[Tuple[str, str]]:
    """The (module, name) globals a torch zip file's pickle refers to, found by reading its
    opcodes (nothing is unpickled); empty for other files."""
    if not zipfile.is_zipfile(path):
        return set()
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pickles:
            return set()
        data = archive.read(pickles[0])
    found, strings = set(), []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            found.add(tuple(argument.split(" ", 1)))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add((strings[-2], strings[-1]))
        elif isinstance(argument, str):
            strings.append(argument)
    return found
