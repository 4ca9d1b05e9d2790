"""Resolve a checkpoint path or URL (``MODEL.WEIGHTS``) to a local file, downloading it once."""

from __future__ import annotations

import os

from iopath.common.file_io import PathManager as PathManagerBase

from ..utils.file_io import PathManager, detectron2_url
from .errors import CheckpointDownloadError


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
