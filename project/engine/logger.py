"""Console and file logging for training and evaluation runs."""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"
# Loggers that report through the same handlers: the project's and those of libraries it uses.
LOGGER_NAMES = ("project", "fvcore", "__main__")


def setup_logger(
    output_dir: Optional[str] = None, distributed_rank: int = 0, level: int = logging.INFO
) -> logging.Logger:
    """Send the project's log records to stdout (main process only) and, with ``output_dir``,
    to ``<output_dir>/log.txt`` (``log.txt.rank<r>`` for the other processes).

    Handlers installed by an earlier call are replaced, so calling it again is safe. Returns
    the ``project`` logger.
    """
    formatter = logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT)
    handlers = []
    if distributed_rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(formatter)
        handlers.append(console)
    if output_dir:
        filename = os.path.join(output_dir, "log.txt" if distributed_rank == 0 else f"log.txt.rank{distributed_rank}")
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(filename)
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if getattr(h, "_installed_by_setup_logger", False)]:
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            handler._installed_by_setup_logger = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logging.getLogger("project")
