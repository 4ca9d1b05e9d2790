"""Exceptions raised while reading, matching and writing checkpoints.

All derive from ``CheckpointError``, so a caller can catch every checkpoint problem at once;
each also derives from the built-in exception it refines (``ValueError``, ``OSError``, ...).
Every message names the file (or URL) involved and says what was expected instead.
"""

from __future__ import annotations

import pickle

from ..utils.file_io import FileWriteError


class CheckpointError(Exception):
    """A checkpoint could not be read, matched to the model, downloaded or written."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A weights file refers to a Python global (a class or function) that is not allowed.

    Loading it would let the file construct arbitrary objects or run code, so it is refused
    before anything from the file is executed.
    """


class CheckpointFormatError(CheckpointError, ValueError):
    """A file is truncated, corrupt, or not laid out like any supported checkpoint format."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint cannot belong to the model it is being loaded into (wrong architecture)."""


class NonFiniteWeightsError(CheckpointError, ValueError):
    """Model weights hold NaN or infinite values: a diverged model, which is neither saved nor loaded."""


class CheckpointDownloadError(CheckpointError, OSError):
    """A remote checkpoint (``https://``, ``detectron2://``) could not be downloaded."""


class CheckpointSaveError(CheckpointError, FileWriteError):
    """Writing a checkpoint failed; the destination file was left as it was before."""
