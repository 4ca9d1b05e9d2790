"""Writing an inspection to a folder: one PNG (or a few) per step, ``inspection.json`` with
every table, and ``index.md`` linking the pictures with their key numbers.

Layout of the folder::

    index.md                 the pictures in step order, with the flagged layers
    inspection.json          all numbers (see ``inspection_summary``)
    1_anchors_labels.png     positive / negative / ignored anchors (with ground truth)
    1_anchors_top.png        top anchors by objectness -> refined boxes
    2_proposals.png          before / after NMS
    3_boxes.png              proposal -> class-specific box; detections after NMS
    4_masks.png              M x M probabilities, pasted masks, ground truth
    5_activations/NN_<name>.png   one montage per backbone stage and feature level
    6_weights/page_NN.png    weight histograms, 40 layers a page
    7_result.png             Visualizer.draw_instance_predictions on the original image
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..utils.file_io import FileWriteError, ensure_writable_directory
from ..visualization import Visualizer
from . import figures
from .activations import first_non_finite
from .pipeline import Inspection

JSON_NAME = "inspection.json"
INDEX_NAME = "index.md"


@dataclass
class Report:
    """What ``write_report`` wrote: ``files`` per step (paths relative to ``directory``)."""

    directory: Path
    files: Dict[str, List[str]] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)

    @property
    def json_path(self) -> Path:
        return self.directory / JSON_NAME

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_NAME


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None, tuples as lists and numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "output"


def save_png(image_rgb: np.ndarray, path: Path) -> None:
    """Write an RGB picture as PNG; raises ``FileWriteError`` naming the file when that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Light compression: the pictures are written for looking at, and level 1 is several times faster.
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise FileWriteError(f"{path}: could not write the picture")


def _class_names(metadata: Any) -> Optional[Sequence[str]]:
    return metadata.get("thing_classes") if metadata is not None else None


def _figure_entry(report: Report, step: str, figure: figures.Figure, name: str) -> Dict[str, Any]:
    save_png(figure.image, report.directory / name)
    report.files.setdefault(step, []).append(name)
    return {"file": name, "panels": [list(p) for p in figure.panels], "scale": figure.scale}


def inspection_summary(inspection: Inspection) -> Dict[str, Any]:
    """Every number of the inspection, JSON-ready (figures not yet listed)."""
    source = inspection.input
    found = inspection.capture
    top_n = inspection.options.top_n
    gt = source.ground_truth
    steps: Dict[str, Any] = {}
    if inspection.anchors is not None:
        steps["anchors"] = inspection.anchors.summary()
    if inspection.proposals is not None:
        steps["proposals"] = inspection.proposals.summary(top_n)
    if inspection.boxes is not None and "boxes" in inspection.options.steps:
        steps["boxes"] = inspection.boxes.summary(top_n)
    if inspection.masks is not None:
        steps["masks"] = inspection.masks.summary()
    if "activations" in inspection.options.steps:
        origin = first_non_finite(inspection.activations)
        steps["activations"] = {
            "table": [r.summary() for r in inspection.activations],
            "flagged": {r.name: r.flags for r in inspection.activations if r.flags},
            "first_non_finite": origin.name if origin is not None else None,
        }
    if "weights" in inspection.options.steps:
        steps["weights"] = {
            "num_layers": len(inspection.weights),
            "table": [r.summary() for r in inspection.weights],
            "flagged": {r.name: r.flags for r in inspection.weights if r.flags},
        }
    if "result" in inspection.options.steps:
        steps["result"] = {"num_detections": len(found.output)}
    return _json_ready(
        {
            "source": source.source,
            "original_size": list(source.original_size),
            "input_size": list(found.input_size),
            "frames": {
                "original": "the image as read; the model's output, masks and the result",
                "input": "the image resized for the model; anchors, proposals and the ROI heads' boxes",
            },
            "ground_truth": None
            if gt is None
            else {"boxes_original": len(gt.boxes), "boxes_input": len(gt), "has_masks": gt.masks is not None},
            "options": {"top_n": top_n, "steps": list(inspection.options.steps)},
            "steps": steps,
            "skipped": dict(inspection.skipped),
            "seconds": {k: round(v, 4) for k, v in inspection.seconds.items()},
        }
    )


def _draw_steps(inspection: Inspection, report: Report, summary: Dict[str, Any], metadata: Any) -> None:
    source = inspection.input
    steps = summary["steps"]
    wanted = inspection.options.steps
    top_n = inspection.options.top_n
    input_rgb = source.input_image_rgb() if {"anchors", "proposals", "boxes"} & set(wanted) else None
    gt_boxes = None
    if source.ground_truth is not None:
        gt_boxes = source.ground_truth.input_instances.gt_boxes.tensor.numpy()

    if inspection.anchors is not None:
        entries = []
        if inspection.anchors.labels is not None:
            figure = figures.anchor_labels_figure(input_rgb, inspection.anchors, gt_boxes)
            entries.append(_figure_entry(report, "anchors", figure, "1_anchors_labels.png"))
        figure = figures.top_anchors_figure(input_rgb, inspection.anchors, gt_boxes)
        entries.append(_figure_entry(report, "anchors", figure, "1_anchors_top.png"))
        steps["anchors"]["figures"] = entries
    if inspection.proposals is not None:
        figure = figures.proposals_figure(input_rgb, inspection.proposals, gt_boxes, top_n)
        steps["proposals"]["figures"] = [_figure_entry(report, "proposals", figure, "2_proposals.png")]
    if inspection.boxes is not None and "boxes" in wanted:
        figure = figures.refinement_figure(input_rgb, inspection.boxes, top_n, _class_names(metadata))
        steps["boxes"]["figures"] = [_figure_entry(report, "boxes", figure, "3_boxes.png")]
    if inspection.masks is not None:
        figure = figures.masks_figure(source.image_rgb, inspection.masks)
        steps["masks"]["figures"] = [_figure_entry(report, "masks", figure, "4_masks.png")]
    if "activations" in steps:
        steps["activations"]["figures"] = [
            _figure_entry(
                report, "activations", figures.activation_montage(r), f"5_activations/{i:02d}_{_safe_name(r.name)}.png"
            )
            for i, r in enumerate(inspection.activations)
        ]
    if "weights" in steps and inspection.weights:
        steps["weights"]["figures"] = [
            _figure_entry(report, "weights", page, f"6_weights/page_{i + 1:02d}.png")
            for i, page in enumerate(figures.weight_pages(inspection.weights))
        ]
    if "result" in steps:
        picture = Visualizer(source.image_rgb, metadata).draw_instance_predictions(inspection.capture.output)
        figure = figures.Figure(picture.get_image(), [(0, 0, source.original_size[1], source.original_size[0])], 1)
        steps["result"]["figures"] = [_figure_entry(report, "result", figure, "7_result.png")]


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _images(entry: Dict[str, Any]) -> List[str]:
    return [f"![{f['file']}]({f['file']})" for f in entry.get("figures", [])]


def index_markdown(summary: Dict[str, Any]) -> str:
    """The Markdown index of a written report's ``summary`` (its ``inspection.json``)."""
    steps = summary["steps"]
    lines = [
        f"# Inspection of {summary['source']}",
        "",
        f"Original image {summary['original_size'][0]}x{summary['original_size'][1]} (height x width); "
        f"the model sees it at {summary['input_size'][0]}x{summary['input_size'][1]} (the input frame). "
        "All numbers are in `inspection.json`.",
        "",
    ]
    if "anchors" in steps:
        a = steps["anchors"]
        lines += ["## 1. Anchors", ""]
        if "num_positive" in a:
            lines.append(
                f"{a['num_anchors']} anchors: {a['num_positive']} positive, {a['num_negative']} negative, "
                f"{a['num_ignored']} ignored; {a['gt_with_positive_anchor']} of {a['num_gt']} ground-truth boxes "
                "have a positive anchor."
            )
        else:
            lines.append(f"{a['num_anchors']} anchors (no annotations: no labels).")
        lines += ["", *_images(a), ""]
    if "proposals" in steps:
        p = steps["proposals"]
        lines += ["## 2. Proposals", ""]
        for key, title in (("before_nms", "Before NMS"), ("after_nms", "After NMS")):
            recall = p[key]["recall"]
            text = ", ".join(f"{k}: {_number(v, 3)}" for k, v in recall.items()) if recall else "no ground truth"
            lines.append(f"- {title}: {p[key]['count']} boxes; recall {text}")
        lines += ["", *_images(p), ""]
    if "boxes" in steps:
        b = steps["boxes"]
        lines += [
            "## 3. Box refinement",
            "",
            f"{b['num_proposals']} proposals, {_number(b['num_candidates_above_score_thresh'])} (proposal, class) "
            f"pairs above the score threshold, {b['num_detections']} detections after NMS, "
            f"{len(b['final_detections'])} in the model's output.",
            "",
            *_images(b),
            "",
        ]
    if "masks" in steps:
        m = steps["masks"]
        lines += ["## 4. Masks", "", f"{len(m['instances'])} of {m['num_detections']} detections shown.", ""]
        lines += [*_images(m), ""]
    if "activations" in steps:
        act = steps["activations"]
        lines += ["## 5. Activations", ""]
        if act["first_non_finite"]:
            lines += [f"**NaN or infinite values start at `{act['first_non_finite']}`.**", ""]
        lines += ["| stage | shape | mean | std | zeros | NaN | Inf | flags |", "|---|---|---|---|---|---|---|---|"]
        for row in act["table"]:
            lines.append(
                f"| {row['name']} | {row['shape']} | {_number(row['mean'])} | {_number(row['std'])} | "
                f"{row['zero_fraction']:.1%} | {row['num_nan']} | {row['num_inf']} | {', '.join(row['flags'])} |"
            )
        lines += ["", *_images(act), ""]
    if "weights" in steps:
        w = steps["weights"]
        lines += ["## 6. Weights", "", f"{w['num_layers']} layers; flagged: {len(w['flagged'])}.", ""]
        lines += ["| layer | type | shape | min | max | std | flags |", "|---|---|---|---|---|---|---|"]
        for row in w["table"]:
            lines.append(
                f"| {row['name']} | {row['type']} | {row['shape']} | {_number(row['min'])} | {_number(row['max'])} | "
                f"{_number(row['std'])} | {', '.join(row['flags'])} |"
            )
        lines += ["", *_images(w), ""]
    if "result" in steps:
        lines += ["## 7. Result", "", f"{steps['result']['num_detections']} detections.", "", *_images(steps["result"])]
    if summary["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {k}: {v}" for k, v in summary["skipped"].items()]
    return "\n".join(lines) + "\n"


def write_report(inspection: Inspection, directory: str | os.PathLike, metadata: Any = None) -> Report:
    """Write the pictures, ``inspection.json`` and ``index.md`` of ``inspection`` into
    ``directory`` (created if needed; files of an earlier report there are replaced).
    ``metadata`` (``thing_classes``) names the classes. Raises ``FileWriteError`` when the
    folder cannot be written."""
    directory = Path(directory)
    ensure_writable_directory(str(directory))
    report = Report(directory)
    began = time.perf_counter()
    summary = inspection_summary(inspection)
    _draw_steps(inspection, report, summary, metadata)
    summary["seconds"]["figures"] = round(time.perf_counter() - began, 4)
    report.summary = summary
    try:
        report.json_path.write_text(json.dumps(summary, indent=1))
        report.index_path.write_text(index_markdown(summary))
    except OSError as error:
        raise FileWriteError(f"{directory}: could not write the report ({error})") from error
    return report


__all__ = ["INDEX_NAME", "JSON_NAME", "Report", "index_markdown", "inspection_summary", "save_png", "write_report"]
