"""Resolve checkpoint paths and URLs to local files.

:data:`PathManager` is an iopath ``PathManager`` that understands local paths, ``http(s)://``
URLs (downloaded once and cached under ``$FVCORE_CACHE``, default ``~/.torch/iopath_cache``)
and Detectron2's ``detectron2://`` shorthand for its public model zoo, so config values such as
``MODEL.WEIGHTS: detectron2://ImageNetPretrained/MSRA/R-101.pkl`` work unchanged.
"""

from __future__ import annotations

import os
from typing import Any, List

from iopath.common.file_io import HTTPURLHandler, PathHandler
from iopath.common.file_io import PathManager as PathManagerBase

from .errors import CheckpointDownloadError

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


def get_local_checkpoint_path(path: str, path_manager: PathManagerBase = PathManager) -> str:
    """Return a local file holding the checkpoint ``path`` (a local path or a URL).

    Raises:
        CheckpointDownloadError: a URL could not be downloaded (e.g. no network access); the
            message names the URL and how to proceed with a manually downloaded copy.
        FileNotFoundError: no file exists at ``path``.
    """
    if os.path.isfile(path):
        return path
    url = detectron2_url(path)
    try:
        local_path = path_manager.get_local_path(path)
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise CheckpointDownloadError(
            f"Could not download the checkpoint {url} ({type(error).__name__}: {error}). "
            "If this machine has no network access, download that URL elsewhere, copy the "
            f"file here and pass its local path instead (e.g. MODEL.WEIGHTS=/path/to/"
            f"{os.path.basename(url)})."
        ) from error
    if not os.path.isfile(local_path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    return local_path
