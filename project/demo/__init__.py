"""The demo command: a model run over images, folders, videos or a webcam, results drawn
(``python demo.py --help``)."""

from .cli import main, run_demo

__all__ = ["main", "run_demo"]
