"""The ``last_checkpoint`` record of a checkpoint folder, and what to resume from when it is unusable.

A training run writes ``<folder>/last_checkpoint``, a UTF-8 text file holding the name of its
latest periodic checkpoint (fvcore's convention, which resuming reads). A hand-edited, truncated
or otherwise damaged record would otherwise send resuming to a file that does not exist.
"""

from __future__ import annotations

import os
import re
import zipfile
from typing import Optional, Tuple

LAST_CHECKPOINT = "last_checkpoint"
# The files a periodic checkpointer writes: model_<iteration, 7 digits>.pth and model_final.pth.
# model_best.pth is left out: it holds no RNG state and may be older than the last iteration.
_RESUMABLE_NAME = re.compile(r"model_(\d{7}|final)\.pth")


def checkpoint_named_in_record(save_dir: str) -> Tuple[Optional[str], str]:
    """``(path, "")`` for the checkpoint that ``<save_dir>/last_checkpoint`` names, or
    ``(None, problem)``: a sentence saying why the record cannot be used (it cannot be read, is
    not UTF-8 text, is empty, or names something that is not a file of ``save_dir``)."""
    record = os.path.join(save_dir, LAST_CHECKPOINT)
    try:
        with open(record, "rb") as f:
            content = f.read()
    except OSError as error:
        return None, f"{record} cannot be read ({error.strerror})"
    try:
        name = content.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        return None, f"{record} is not UTF-8 text (byte {error.start} is {content[error.start]:#04x})"
    if not name:
        return None, f"{record} is empty"
    path = os.path.join(save_dir, name)
    if not os.path.isfile(path):
        return None, f"{record} names {name!r}, which is not a file in {save_dir}"
    return path, ""


def _is_complete(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` archive: a zip file whose central directory,
    written last, is present."""
    return zipfile.is_zipfile(path)


def newest_complete_checkpoint(save_dir: str) -> Optional[str]:
    """The most recently modified ``model_<iteration>.pth`` or ``model_final.pth`` of
    ``save_dir`` that is complete, or None when there is none."""
    candidates = [os.path.join(save_dir, name) for name in os.listdir(save_dir) if _RESUMABLE_NAME.fullmatch(name)]
    complete = [path for path in candidates if os.path.isfile(path) and _is_complete(path)]
    return max(complete, key=lambda path: (os.path.getmtime(path), path), default=None)
