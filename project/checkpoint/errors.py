"""Exceptions raised while reading, matching and writing checkpoints.

Every message names the file (or URL) involved and says what was expected instead.
"""

from __future__ import annotations

import pickle


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A weights file refers to a Python global (a class or function) that is not allowed.

    Loading it would let the file construct arbitrary objects or run code, so it is refused
    before anything from the file is executed.
    """


class CheckpointFormatError(ValueError):
    """A file is truncated, corrupt, or not laid out like any supported checkpoint format."""


class CheckpointMismatchError(ValueError):
    """A checkpoint cannot belong to the model it is being loaded into (wrong architecture)."""


class CheckpointDownloadError(OSError):
    """A remote checkpoint (``https://``, ``detectron2://``) could not be downloaded."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed; the destination file was left as it was before."""
