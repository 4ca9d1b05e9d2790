"""Read ``.pkl`` weight files without running code stored in them.

A pickle may name any importable Python global and call it while loading, so ``pickle.load``
on an untrusted file can run arbitrary code. Weight files (Detectron2 model-zoo ``.pkl``,
Detectron / Caffe2 ``.pkl``, MSRA ImageNet ``.pkl``) only need numpy arrays inside plain
containers, so :class:`RestrictedUnpickler` admits exactly the globals those need and refuses
everything else *before* it is imported or called.
"""

from __future__ import annotations

import _codecs
import collections
import pickle
from typing import Any, BinaryIO, Dict, Tuple

import numpy as np

from .errors import CheckpointFormatError, UnsafeCheckpointError


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """``(module, name) -> object`` for every global a pickle of numpy arrays may reference.

    The numpy helpers are taken from numpy's own ``__reduce__`` output, so they resolve to the
    right objects whether a file was written under numpy 1 (``numpy.core``) or numpy 2
    (``numpy._core``) without importing the deprecated ``numpy.core`` alias.
    """
    reconstruct_array = np.zeros(0).__reduce__()[0]
    reconstruct_scalar = np.float32(0).__reduce__()[0]
    array_from_buffer = np.zeros(1).__reduce_ex__(5)[0]  # pickle protocol 5 path
    allowed: Dict[Tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # Python 3 writes ``bytes`` as ``_codecs.encode(text, "latin1")`` in protocols 0-2.
        ("_codecs", "encode"): _codecs.encode,
    }
    for numpy_core in ("numpy.core", "numpy._core"):
        allowed[(f"{numpy_core}.multiarray", "_reconstruct")] = reconstruct_array
        allowed[(f"{numpy_core}.multiarray", "scalar")] = reconstruct_scalar
        allowed[(f"{numpy_core}.numeric", "_frombuffer")] = array_from_buffer
    # Containers without a dedicated pickle opcode; Python 2 files call the module __builtin__.
    for builtins_module in ("builtins", "__builtin__"):
        for container in (set, frozenset, bytearray):
            allowed[(builtins_module, container.__name__)] = container
    return allowed


ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in :data:`ALLOWED_GLOBALS`.

    Any other global raises :class:`UnsafeCheckpointError` naming ``source`` and the global;
    it is neither imported nor called.
    """

    def __init__(self, file: BinaryIO, *, source: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to load the global '{module}.{name}'. Weight files may "
                "only contain numpy arrays in plain containers (dict, list, tuple, OrderedDict); "
                "resolving other globals would let the file run code. Re-export the weights as "
                "a dict of numpy arrays if you trust this file."
            )
        return allowed


def load_pickle(path: str, *, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    ``encoding="latin1"`` reads Python-2 era Detectron / Caffe2 files, whose byte strings
    (including numpy array buffers) would otherwise fail to decode.

    Raises:
        UnsafeCheckpointError: the file references a global outside :data:`ALLOWED_GLOBALS`.
        CheckpointFormatError: the file is truncated or not a pickle at all.
    """
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, source=path, encoding=encoding).load()
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # truncated or garbage input surfaces as many types
            raise CheckpointFormatError(
                f"{path}: not a readable pickle of numpy arrays (expected a Detectron2, "
                f"Detectron or Caffe2 .pkl weights file): {type(error).__name__}: {error}"
            ) from error
