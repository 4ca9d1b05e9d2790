"""Console and file logging for training and evaluation runs."""

from __future__ import annotations

import logging
import os
from typing import Optional

from ..utils.logger import setup_logger as _setup_package_logger

# Loggers that report through the same handlers: the project's and those of libraries it uses.
LOGGER_NAMES = ("project", "fvcore", "__main__")


def setup_logger(
    output_dir: Optional[str] = None, distributed_rank: int = 0, level: int = logging.INFO
) -> logging.Logger:
    """Send the records of the project, fvcore and ``__main__`` loggers at ``level`` and above
    to stdout (main process only) and, with ``output_dir``, to ``<output_dir>/log.txt``
    (``log.txt.rank<r>`` for the other processes), without colours.

    Handlers installed by an earlier call are replaced, so calling it again is safe. Returns
    the ``project`` logger. (Detectron2's one-logger ``setup_logger`` is
    :func:`project.utils.logger.setup_logger`.)
    """
    log_file = os.path.join(output_dir, "log.txt") if output_dir else None
    for name in LOGGER_NAMES:
        _setup_package_logger(log_file, distributed_rank, color=False, name=name, level=level)
    return logging.getLogger("project")
