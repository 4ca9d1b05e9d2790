"""Sending a package's log records to the console and to a log file (``setup_logger``)."""

from __future__ import annotations

import logging
import os
import sys
from typing import List, Optional

__all__ = ["setup_logger"]

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"
_RED = "\033[31m{}\033[0m"
_INSTALLED = "_installed_by_setup_logger"  # marks the handlers a later call replaces


class _ConsoleFormatter(logging.Formatter):
    """The log format, with ``root_name`` shortened to ``abbrev_name`` at the start of logger
    names and, with ``color``, the level names of warnings and errors in red."""

    def __init__(self, root_name: str, abbrev_name: str, color: bool):
        super().__init__(_FORMAT, datefmt=_DATE_FORMAT)
        self._root_name = root_name
        self._abbrev_name = abbrev_name
        self._color = color

    def formatMessage(self, record: logging.LogRecord) -> str:
        shown = logging.makeLogRecord(record.__dict__)
        if shown.name == self._root_name or shown.name.startswith(self._root_name + "."):
            rest = shown.name[len(self._root_name) :].lstrip(".")
            shown.name = ".".join(part for part in (self._abbrev_name, rest) if part)
        if self._color and shown.levelno >= logging.WARNING:
            shown.levelname = _RED.format(shown.levelname)
        return super().formatMessage(shown)


def _log_file_name(output: str, distributed_rank: int) -> str:
    """``output`` itself when it names a ``.txt`` or ``.log`` file, else ``<output>/log.txt``;
    processes other than rank 0 get ``.rank<r>`` appended."""
    filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    return filename if distributed_rank == 0 else f"{filename}.rank{distributed_rank}"


def _new_handlers(
    output: Optional[str], distributed_rank: int, console_formatter: logging.Formatter, configure_stdout: bool
) -> List[logging.Handler]:
    handlers: List[logging.Handler] = []
    if configure_stdout and distributed_rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(console_formatter)
        handlers.append(console)
    if output is not None:
        filename = _log_file_name(output, distributed_rank)
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        file_handler = logging.FileHandler(filename)
        file_handler.setFormatter(logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT))
        handlers.append(file_handler)
    return handlers


def _replace_handlers(logger: logging.Logger, handlers: List[logging.Handler]) -> None:
    """Close and remove the handlers an earlier ``setup_logger`` put on ``logger``, add ``handlers``."""
    for handler in [h for h in logger.handlers if getattr(h, _INSTALLED, False)]:
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        setattr(handler, _INSTALLED, True)
        logger.addHandler(handler)


def setup_logger(
    output: Optional[str] = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "project",
    abbrev_name: Optional[str] = None,
    enable_propagation: bool = False,
    configure_stdout: bool = True,
    level: int = logging.DEBUG,
) -> logging.Logger:
    """Make the logger ``name`` (and its children) write records of ``level`` and above to
    stdout (process of ``distributed_rank`` 0 only, when ``configure_stdout``) and, given
    ``output``, to a file: ``output`` itself if it ends in ``.txt`` or ``.log``, else
    ``<output>/log.txt``, with ``.rank<r>`` appended for the other processes.

    On the console, logger names starting with ``name`` show ``abbrev_name`` in its place
    ("" drops it; default: unchanged), and with ``color`` warnings and errors are marked in red.
    ``enable_propagation`` also passes records on to the parent loggers. Calling it again for
    the same ``name`` replaces the handlers of the earlier call. Returns the logger.
    """
    logger = logging.getLogger(name)
    formatter = _ConsoleFormatter(name, name if abbrev_name is None else abbrev_name, color)
    _replace_handlers(logger, _new_handlers(output, distributed_rank, formatter, configure_stdout))
    logger.setLevel(level)
    logger.propagate = enable_propagation
    return logger
