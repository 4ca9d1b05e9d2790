"""Pictures of predictions and ground truth: ``Visualizer`` for one image, ``VideoVisualizer``
for frames whose objects keep their colour, and the per-object exports of the demo."""

from .colors import ColorMode
from .visualizer import VisImage, Visualizer

__all__ = ["ColorMode", "VisImage", "Visualizer"]
