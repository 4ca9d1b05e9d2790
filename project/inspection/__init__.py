"""Looking inside a model on one image, stage by stage, as the Mask R-CNN tutorials do.

``inspect_model`` runs the model once with forward hooks (``capture``) and takes each stage's
view of that run: anchors (``anchors``), proposals (``proposals``), box refinement
(``refinement``), masks (``masks``), backbone activations (``activations``) and weights
(``weights``). ``write_report`` draws it (``figures``) into PNGs, ``inspection.json`` and
``index.md``. Inputs come from ``inputs``: an image file or a dataset dict with annotations.
``tools/inspect_model.py`` is the command line.
"""

from .capture import Capture, capture
from .inputs import GroundTruth, InspectionInput, input_from_dataset_dict, input_from_file, input_from_image
from .pipeline import ALL_STEPS, Inspection, InspectionOptions, UnknownModuleError, inspect_model
from .report import Report, write_report

__all__ = [
    "ALL_STEPS",
    "Capture",
    "GroundTruth",
    "Inspection",
    "InspectionInput",
    "InspectionOptions",
    "Report",
    "UnknownModuleError",
    "capture",
    "input_from_dataset_dict",
    "input_from_file",
    "input_from_image",
    "inspect_model",
    "write_report",
]
