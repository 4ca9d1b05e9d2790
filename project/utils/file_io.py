"""Write a local file so that readers see either its old content or the complete new one."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import BinaryIO, Callable

from .errors import CheckpointSaveError


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then atomically move it to ``path``.

    The temporary file is flushed and fsync'ed before ``os.replace``, so neither a crash nor a
    failing ``write`` (e.g. a full disk) can leave a truncated file at ``path``. On failure the
    temporary file is removed and ``path`` keeps its previous content (or stays absent).

    Raises:
        CheckpointSaveError: an ``OSError`` occurred; it is chained as the cause.
        Any other exception raised by ``write``, after the same clean-up.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A unique hidden name in the same directory: os.replace is atomic only within a filesystem.
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        os_error = _os_error_behind(error)
        if os_error is not None:
            raise CheckpointSaveError(
                f"Could not write {path} ({type(os_error).__name__}: {os_error}). Its previous content, "
                "if any, is unchanged and the partially written temporary file was removed."
            ) from error
        raise
    _fsync_directory(directory)


def _os_error_behind(error: BaseException):
    """``error`` if it is an OSError, else the OSError it was raised while handling, if any
    (``torch.save`` reports a failed write, e.g. a full disk, as a RuntimeError whose context
    is the OSError)."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__context__
    return None


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself; some filesystems cannot fsync a directory, which is harmless."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
