"""Files: ``PathManager`` for local paths and URLs, and writes that never leave a partial file.

:data:`PathManager` is an iopath ``PathManager`` that understands local paths, ``http(s)://``
URLs (downloaded once and cached under ``$FVCORE_CACHE``, default ``~/.torch/iopath_cache``)
and Detectron2's ``detectron2://`` shorthand for its public model zoo, so config values such as
``MODEL.WEIGHTS: detectron2://ImageNetPretrained/MSRA/R-101.pkl`` work unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from typing import Any, BinaryIO, Callable, List

from iopath.common.file_io import HTTPURLHandler, PathHandler
from iopath.common.file_io import PathManager as PathManagerBase


class FileWriteError(OSError):
    """Writing a file failed; the destination was left as it was before."""


DETECTRON2_PREFIX = "detectron2://"
DETECTRON2_URL_ROOT = "https://dl.fbaipublicfiles.com/detectron2/"


def detectron2_url(path: str) -> str:
    """The https URL that ``detectron2://NAME`` stands for; any other path is returned as is."""
    if path.startswith(DETECTRON2_PREFIX):
        return DETECTRON2_URL_ROOT + path[len(DETECTRON2_PREFIX) :]
    return path


class Detectron2Handler(PathHandler):
    """Serves ``detectron2://NAME`` from ``https://dl.fbaipublicfiles.com/detectron2/NAME``."""

    def _get_supported_prefixes(self) -> List[str]:
        return [DETECTRON2_PREFIX]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return PathManager.get_local_path(detectron2_url(path), **kwargs)

    def _open(self, path: str, mode: str = "r", **kwargs: Any) -> Any:
        return PathManager.open(detectron2_url(path), mode, **kwargs)


PathManager = PathManagerBase()
PathManager.register_handler(HTTPURLHandler())
PathManager.register_handler(Detectron2Handler())


# The hidden temporary file atomic_write writes next to its target: .<target name>.<pid>.<uuid>.tmp
_TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp")


def _temporary_path(path: str) -> str:
    """A unique hidden name next to ``path`` (``os.replace`` is atomic only within a filesystem)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then atomically move it to ``path``.

    The temporary file is flushed and fsync'ed before ``os.replace``, so neither a crash nor a
    failing ``write`` (e.g. a full disk) can leave a truncated file at ``path``. On failure the
    temporary file is removed and ``path`` keeps its previous content (or stays absent).

    Raises:
        FileWriteError: an ``OSError`` occurred; it is chained as the cause.
        Any other exception raised by ``write``, after the same clean-up.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:  # e.g. a file where a parent folder should be
        raise FileWriteError(f"Could not write {path}: cannot create its folder {directory} ({error})") from error
    temporary = _temporary_path(path)
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
            raise FileWriteError(
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


def _process_is_running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def remove_stale_temporaries(directory: str) -> List[str]:
    """Delete the temporary files that :func:`atomic_write` left in ``directory`` when its
    process was killed mid-write: those whose writing process no longer runs on this machine.
    Returns their paths; other files, and temporaries of running processes, are left alone."""
    removed = []
    for name in sorted(os.listdir(directory)):
        match = _TEMPORARY_NAME.fullmatch(name)
        if match is None or _process_is_running(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def ensure_writable_directory(directory: str) -> None:
    """Create ``directory`` if needed and check that files can be created in it (by creating
    and deleting an unnamed temporary file).

    Raises:
        FileWriteError: the directory cannot be created or written to (read-only filesystem,
            missing permission, a file in the way, ...).
    """
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise FileWriteError(
            f"cannot create files in {directory} ({type(error).__name__}: {error.strerror})"
        ) from error
