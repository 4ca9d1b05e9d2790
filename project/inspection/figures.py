"""The inspection's pictures, drawn with OpenCV and numpy.

Every figure is an (H, W, 3) uint8 RGB array: one or more panels side by side, each the image
(upscaled by a whole factor when it is small, so that anchors of a few pixels stay visible)
with boxes drawn on it, and a legend strip below them. ``Figure.panels`` gives where each
panel's image lies, so a reader (or a test) can tell the picture from the legend. Box
coordinates are XYXY in the pixels of the image drawn; pixel edges, as everywhere in the
project (a box ``[0, 0, 10, 10]`` covers pixels 0..9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..visualization.colors import darker, palette_colors
from ..visualization.instance_export import box_window, window_mask
from ..visualization.labels import draw_labels, label_texts
from .activations import ActivationRecord
from .anchors import IGNORED, NEGATIVE, POSITIVE, AnchorStep
from .masks import MasksStep, MaskView
from .proposals import ProposalsStep
from .refinement import RefinementStep
from .weights import WeightRecord

Color = Tuple[int, int, int]

POSITIVE_COLOR: Color = (40, 220, 40)
NEGATIVE_COLOR: Color = (235, 50, 50)
IGNORED_COLOR: Color = (250, 200, 0)
GT_COLOR: Color = (255, 255, 255)
NAN_COLOR: Color = (255, 0, 255)
FLAG_COLOR: Color = (230, 30, 30)
MODEL_MASK_COLOR: Color = (255, 80, 80)
GT_MASK_COLOR: Color = (80, 255, 80)
TEXT_COLOR: Color = (235, 235, 235)
BACKGROUND: Color = (24, 24, 24)
PANEL_GAP = 8
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
LINE_HEIGHT = 18
MASK_TEXT_WIDTH = 200


@dataclass
class Figure:
    """A drawn figure: ``image`` (H, W, 3) uint8 RGB, ``panels`` the (x0, y0, width, height)
    of each panel's picture inside it, ``scale`` the factor from image pixels to figure pixels
    in those panels."""

    image: np.ndarray
    panels: List[Tuple[int, int, int, int]] = field(default_factory=list)
    scale: int = 1


# ---------------------------------------------------------------------------- drawing helpers


def canvas_scale(image_size: Sequence[int], min_side: int = 512, max_scale: int = 4) -> int:
    """The whole factor (1 to ``max_scale``) that brings the shorter side to ``min_side`` or more."""
    shorter = max(1, min(int(image_size[0]), int(image_size[1])))
    return int(min(max_scale, max(1, math.ceil(min_side / shorter))))


def upscaled(image_rgb: np.ndarray, scale: int) -> np.ndarray:
    """The image enlarged ``scale`` times by pixel repetition (a copy, contiguous)."""
    if scale == 1:
        return np.ascontiguousarray(image_rgb).copy()
    return cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def _corners(box: Sequence[float], scale: int, shape: Tuple[int, ...]) -> Optional[Tuple[int, int, int, int]]:
    """Integer corners (inclusive) of an image-pixel box on a canvas ``scale`` times larger,
    clipped to the canvas; None for a box that is not finite or lies outside the canvas."""
    values = np.asarray(box, dtype=np.float64) * scale
    height, width = shape[:2]
    if not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0 or values[0] >= width or values[1] >= height:
        return None
    left = int(np.clip(round(values[0]), 0, width - 1))
    top = int(np.clip(round(values[1]), 0, height - 1))
    right = int(np.clip(round(values[2]) - 1, left, width - 1))
    bottom = int(np.clip(round(values[3]) - 1, top, height - 1))
    return left, top, right, bottom


def draw_box(canvas: np.ndarray, box: Sequence[float], color: Color, scale: int = 1, thickness: int = 1) -> None:
    """A solid rectangle for ``box`` (image pixels) on a canvas ``scale`` times larger (nothing
    for a box outside it or not finite)."""
    corners = _corners(box, scale, canvas.shape)
    if corners is not None:
        x0, y0, x1, y1 = corners
        cv2.rectangle(canvas, (x0, y0), (x1, y1), tuple(int(c) for c in color), thickness, cv2.LINE_8)


def _dashed_line(canvas: np.ndarray, p0: Tuple[int, int], p1: Tuple[int, int], color: Color, thickness: int) -> None:
    length = max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))
    dash, gap = 4, 3
    for start in range(0, length + 1, dash + gap):
        end = min(start + dash - 1, length)
        a = (p0[0] + (p1[0] - p0[0]) * start // max(length, 1), p0[1] + (p1[1] - p0[1]) * start // max(length, 1))
        b = (p0[0] + (p1[0] - p0[0]) * end // max(length, 1), p0[1] + (p1[1] - p0[1]) * end // max(length, 1))
        cv2.line(canvas, a, b, color, thickness, cv2.LINE_8)


def draw_dotted_box(canvas: np.ndarray, box: Sequence[float], color: Color, scale: int = 1, thickness: int = 1) -> None:
    """A dashed rectangle for ``box`` (image pixels) on a canvas ``scale`` times larger (nothing
    for a box outside it or not finite)."""
    corners = _corners(box, scale, canvas.shape)
    if corners is None:
        return
    x0, y0, x1, y1 = corners
    color = tuple(int(c) for c in color)
    for p0, p1 in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x0, y1), (x1, y1)), ((x0, y0), (x0, y1))):
        _dashed_line(canvas, p0, p1, color, thickness)


def draw_link(canvas: np.ndarray, box_from: Sequence[float], box_to: Sequence[float], color: Color, scale: int) -> None:
    """An arrow from the centre of ``box_from`` to the centre of ``box_to`` (image pixels)."""
    a, b = np.asarray(box_from, dtype=np.float64), np.asarray(box_to, dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return
    start = (int(round((a[0] + a[2]) / 2 * scale)), int(round((a[1] + a[3]) / 2 * scale)))
    end = (int(round((b[0] + b[2]) / 2 * scale)), int(round((b[1] + b[3]) / 2 * scale)))
    if start != end:
        cv2.arrowedLine(canvas, start, end, tuple(int(c) for c in color), 1, cv2.LINE_8, tipLength=0.25)


def put_text(
    canvas: np.ndarray, text: str, origin: Tuple[int, int], color: Color = TEXT_COLOR, boxed: bool = False
) -> None:
    """``text`` with its baseline at ``origin``; ``boxed`` puts it on a dark box so that it
    reads on any picture."""
    if boxed:
        (width, height), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
        x, y = origin
        cv2.rectangle(canvas, (x - 2, y - height - 2), (x + width + 1, y + baseline), BACKGROUND, cv2.FILLED)
    cv2.putText(canvas, text, origin, FONT, FONT_SCALE, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def text_width(text: str) -> int:
    return cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0]


LegendItem = Tuple[Optional[Color], str]


def legend(items: Sequence[LegendItem], width: int) -> np.ndarray:
    """A strip at least ``width`` wide with one line per item: a colour swatch (when the item
    has a colour) and its text."""
    needed = max([text_width(text) + 40 for _, text in items] + [width])
    strip = np.full((LINE_HEIGHT * len(items) + 8, needed, 3), BACKGROUND, dtype=np.uint8)
    for row, (color, text) in enumerate(items):
        y = 4 + row * LINE_HEIGHT
        x = 6
        if color is not None:
            cv2.rectangle(strip, (x, y + 3), (x + 12, y + 14), tuple(int(c) for c in color), cv2.FILLED)
            x += 20
        put_text(strip, text, (x, y + 13))
    return strip


def _padded(image: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def compose(panels: Sequence[np.ndarray], titles: Sequence[str], items: Sequence[LegendItem], scale: int) -> Figure:
    """Panels side by side, each under a title line, and the legend below them all."""
    title_height = LINE_HEIGHT + 6 if any(titles) else 0
    height = max(p.shape[0] for p in panels) + title_height
    width = sum(p.shape[1] for p in panels) + PANEL_GAP * (len(panels) - 1)
    strip = legend(items, width) if items else np.zeros((0, width, 3), dtype=np.uint8)
    width = max(width, strip.shape[1])
    out = np.full((height + strip.shape[0], width, 3), BACKGROUND, dtype=np.uint8)
    boxes, x = [], 0
    for panel, title in zip(panels, titles):
        if title:
            put_text(out, title, (x + 4, LINE_HEIGHT))
        out[title_height : title_height + panel.shape[0], x : x + panel.shape[1]] = panel
        boxes.append((x, title_height, panel.shape[1], panel.shape[0]))
        x += panel.shape[1] + PANEL_GAP
    out[height : height + strip.shape[0], : strip.shape[1]] = strip
    return Figure(out, boxes, scale)


def heatmap(values: np.ndarray, low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """(H, W) values as an (H, W, 3) uint8 RGB picture (viridis), from ``low`` (dark) to
    ``high`` (bright), by default the finite values' range; NaN and infinities in magenta."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if low is None or high is None:
        low = float(values[finite].min()) if finite.any() else 0.0
        high = float(values[finite].max()) if finite.any() else 1.0
    span = high - low if high > low else 1.0
    levels = np.clip((np.where(finite, values, low) - low) / span * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)[:, :, ::-1].copy()
    rgb[~finite] = NAN_COLOR
    return rgb


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to fit a ``size`` x ``size`` square (aspect kept: nearest-neighbour
    when enlarging, area averaging when shrinking), centred on the background colour."""
    height, width = image.shape[:2]
    factor = size / max(height, width, 1)
    new_w, new_h = max(1, int(round(width * factor))), max(1, int(round(height * factor)))
    interpolation = cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    y, x = (size - new_h) // 2, (size - new_w) // 2
    out[y : y + new_h, x : x + new_w] = resized
    return out


def grid(tiles: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized (h, w, 3) tiles in rows of ``columns``."""
    if not tiles:
        return np.full((1, 1, 3), BACKGROUND, dtype=np.uint8)
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    cols = min(columns, len(tiles))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), BACKGROUND, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out


def _rank_colors(count: int) -> np.ndarray:
    return palette_colors(range(count))


def _draw_boxes(canvas: np.ndarray, boxes: np.ndarray, color: Color, scale: int, thickness: int = 1) -> None:
    for box in boxes:
        draw_box(canvas, box, color, scale, thickness)


# ---------------------------------------------------------------------------- step figures


def _sample(indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    if len(indices) <= count:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=count, replace=False))


def anchor_labels_figure(
    image_rgb: np.ndarray, step: AnchorStep, gt_boxes: np.ndarray, sample: int = 100, seed: int = 0
) -> Figure:
    """Step 1a: every positive anchor (green), a random sample of ``sample`` negative (red) and
    ignored (amber) anchors, and the ground-truth boxes (white), on the input image."""
    scale = canvas_scale(image_rgb.shape)
    canvas = upscaled(image_rgb, scale)
    labels = step.labels.labels.numpy()
    anchors = step.anchors.numpy()
    negatives = _sample(np.flatnonzero(labels == NEGATIVE), sample, seed)
    ignored = _sample(np.flatnonzero(labels == IGNORED), sample, seed + 1)
    positives = np.flatnonzero(labels == POSITIVE)
    _draw_boxes(canvas, anchors[negatives], NEGATIVE_COLOR, scale)
    _draw_boxes(canvas, anchors[ignored], IGNORED_COLOR, scale)
    _draw_boxes(canvas, anchors[positives], POSITIVE_COLOR, scale)
    _draw_boxes(canvas, gt_boxes, GT_COLOR, scale)
    summary = step.labels
    items: List[LegendItem] = [
        (POSITIVE_COLOR, f"positive anchors: {summary.count(POSITIVE)} (all drawn)"),
        (NEGATIVE_COLOR, f"negative anchors: {summary.count(NEGATIVE)} ({len(negatives)} drawn at random)"),
        (IGNORED_COLOR, f"ignored anchors: {summary.count(IGNORED)} ({len(ignored)} drawn at random)"),
        (GT_COLOR, f"ground truth: {len(gt_boxes)} boxes, {summary.gt_with_positive} with a positive anchor"),
        (None, f"matcher IoU thresholds {summary.thresholds}, labels {summary.label_values}; input frame x{scale}"),
    ]
    return compose([canvas], ["anchors labelled by the RPN's matcher"], items, scale)


def top_anchors_figure(image_rgb: np.ndarray, step: AnchorStep, gt_boxes: Optional[np.ndarray]) -> Figure:
    """Step 1b: the top anchors by objectness, each dashed, with an arrow to the solid box its
    deltas refine it into (one colour per anchor, best first)."""
    scale = canvas_scale(image_rgb.shape)
    canvas = upscaled(image_rgb, scale)
    if gt_boxes is not None:
        _draw_boxes(canvas, gt_boxes, GT_COLOR, scale)
    top = step.top
    colors = _rank_colors(len(top.index))
    for i in reversed(range(len(top.index))):
        color = tuple(int(c) for c in colors[i])
        draw_dotted_box(canvas, top.anchors[i].tolist(), color, scale)
        draw_box(canvas, top.refined[i].tolist(), color, scale)
        draw_link(canvas, top.anchors[i].tolist(), top.refined[i].tolist(), color, scale)
    items: List[LegendItem] = [
        (
            None,
            f"top {len(top.index)} of {len(step.anchors)} anchors by objectness: dashed anchor -> solid refined box",
        ),
    ]
    if len(top.logits):
        items.append((None, f"objectness logits from {float(top.logits[0]):.2f} down to {float(top.logits[-1]):.2f}"))
    if gt_boxes is not None:
        items.append((GT_COLOR, f"ground truth ({len(gt_boxes)} boxes)"))
    return compose([canvas], ["top anchors by objectness"], items, scale)


def _recall_text(recall: Optional[Dict[str, float]]) -> str:
    if not recall:
        return ""
    parts = [f"{key.replace('iou_', 'IoU ')} {value:.0%}" for key, value in recall.items() if value == value]
    return "; recall " + ", ".join(parts) if parts else ""


def proposals_figure(image_rgb: np.ndarray, step: ProposalsStep, gt_boxes: Optional[np.ndarray], top_n: int) -> Figure:
    """Step 2: the ``top_n`` best candidates before NMS (left) and proposals after it (right),
    coloured by rank, with the ground truth in white."""
    scale = canvas_scale(image_rgb.shape)
    panels = []
    for proposals in (step.before_nms, step.after_nms):
        canvas = upscaled(image_rgb, scale)
        if gt_boxes is not None:
            _draw_boxes(canvas, gt_boxes, GT_COLOR, scale)
        shown = min(top_n, len(proposals))
        colors = _rank_colors(shown)
        for i in reversed(range(shown)):
            draw_box(canvas, proposals.boxes[i].tolist(), tuple(int(c) for c in colors[i]), scale)
        panels.append(canvas)
    items: List[LegendItem] = [
        (None, f"before NMS: {len(step.before_nms)} candidates{_recall_text(step.recall_before)}"),
        (None, f"after NMS: {len(step.after_nms)} proposals{_recall_text(step.recall_after)}"),
        (None, f"best {top_n} of each drawn, colour by rank; settings {step.settings}"),
    ]
    if gt_boxes is not None:
        items.append((GT_COLOR, f"ground truth ({len(gt_boxes)} boxes)"))
    titles = [f"before NMS (top {top_n})", f"after NMS (top {top_n})"]
    return compose(panels, titles, items, scale)


def refinement_figure(
    image_rgb: np.ndarray, step: RefinementStep, top_n: int, class_names: Optional[Sequence[str]] = None
) -> Figure:
    """Step 3: left, the proposals of the ``top_n`` best detections (dashed) with an arrow to
    each one's class-specific refined box (solid); right, every detection after the score
    threshold and NMS, coloured by rank."""
    scale = canvas_scale(image_rgb.shape)
    left, right = upscaled(image_rgb, scale), upscaled(image_rgb, scale)
    shown = min(top_n, len(step.detections))
    colors = _rank_colors(len(step.detections))
    for i in reversed(range(shown)):
        color = tuple(int(c) for c in colors[i])
        refined = step.refined_boxes[i].tolist()
        if step.roi_index is not None:
            proposal = step.roi_boxes[int(step.roi_index[i])].tolist()
            draw_dotted_box(left, proposal, color, scale)
            draw_link(left, proposal, refined, color, scale)
        draw_box(left, refined, color, scale)
    for i in reversed(range(len(step.detections))):
        draw_box(right, step.refined_boxes[i].tolist(), tuple(int(c) for c in colors[i]), scale)
    if shown:
        texts = label_texts(
            step.detections.pred_classes[:shown].numpy(), step.detections.scores[:shown].numpy(), class_names
        )
        boxes = step.refined_boxes[:shown].numpy().astype(np.float64) * scale
        draw_labels(right, boxes, texts, darker(colors[:shown]), range(shown))
    settings = ", ".join(f"{k} {v}" for k, v in step.settings.items() if v is not None)
    candidates = f"{step.num_candidates} (proposal, class) pairs above the score threshold"
    items: List[LegendItem] = [
        (None, f"{len(step.roi_boxes)} proposals scored; {candidates}"),
        (None, f"{len(step.detections)} detections after per-class NMS ({settings})"),
        (None, f"left: dashed proposal -> solid refined box, best {shown}"),
        (None, f"right: all detections, best {shown} labelled"),
    ]
    titles = ["proposal -> class-specific box", "detections after score threshold and NMS"]
    return compose([left, right], titles, items, scale)


def _overlay(crop_rgb: np.ndarray, mask: np.ndarray, color: Color) -> np.ndarray:
    out = crop_rgb.copy()
    if mask.any():
        out[mask] = (0.5 * out[mask] + 0.5 * np.asarray(color)).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
    return out


def _mask_window(box: np.ndarray, image_size: Tuple[int, int], margin: float = 0.15) -> Tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * margin + 2, (y1 - y0) * margin + 2
    return box_window((x0 - dx, y0 - dy, x1 + dx, y1 + dy), image_size)


def _blank_tile(size: int, text: str) -> np.ndarray:
    tile = np.full((size, size, 3), (60, 60, 60), dtype=np.uint8)
    put_text(tile, text, (6, size // 2))
    return tile


def _mask_row(image_rgb: np.ndarray, view: MaskView, tile: int) -> np.ndarray:
    """One detection's row: probabilities, pasted mask, ground-truth mask, and its numbers."""
    window = _mask_window(view.box, image_rgb.shape[:2])
    x0, y0, x1, y1 = window
    crop = image_rgb[y0:y1, x0:x1]
    if crop.size:
        pasted = window_mask(view.pasted, window)
        gt = window_mask(view.gt_mask, window) if view.gt_mask is not None else None
    else:
        crop, pasted, gt = np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), bool), None
    if view.probabilities is not None:
        probabilities = fit(heatmap(view.probabilities, 0.0, 1.0), tile)
    else:
        probabilities = _blank_tile(tile, "not traced")
    model_tile = fit(_overlay(crop, pasted, MODEL_MASK_COLOR), tile)
    gt_tile = fit(_overlay(crop, gt, GT_MASK_COLOR), tile) if gt is not None else _blank_tile(tile, "no gt")
    text = np.full((tile, MASK_TEXT_WIDTH, 3), BACKGROUND, dtype=np.uint8)
    lines = [f"#{view.output_index} class {view.pred_class}"]
    if view.score is not None:
        lines.append(f"score {view.score:.3f}")
    lines.append(f"area {int(np.count_nonzero(view.pasted.mask))} px")
    if view.gt_box_iou is not None:
        lines.append(f"gt {view.gt_index}: box IoU {view.gt_box_iou:.2f}")
    if view.mask_iou is not None:
        lines.append(f"mask IoU {view.mask_iou:.2f}")
    for row, line in enumerate(lines):
        put_text(text, line, (6, 18 + row * LINE_HEIGHT))
    return np.hstack([probabilities, _gap(tile), model_tile, _gap(tile), gt_tile, _gap(tile), text])


def masks_figure(image_rgb: np.ndarray, step: MasksStep, tile: int = 112, rows_per_column: int = 10) -> Figure:
    """Step 4: per detection (best first, in columns of ``rows_per_column``): its M x M mask
    probabilities (viridis, 0 dark to 1 yellow, covering its box), the model's pasted mask on
    the original image around the box, and the ground-truth mask of the object it overlaps most."""
    header = np.full((LINE_HEIGHT + 6, 3 * tile + MASK_TEXT_WIDTH + 3 * 4, 3), BACKGROUND, dtype=np.uint8)
    for i, title in enumerate(("M x M probability", "pasted (model)", "ground truth")):
        put_text(header, title, (i * (tile + 4) + 2, LINE_HEIGHT))
    rows = [_mask_row(image_rgb, view, tile) for view in step.views]
    columns = []
    for start in range(0, max(1, len(rows)), rows_per_column):
        chunk = rows[start : start + rows_per_column]
        spaced = [np.vstack([r, np.full((4, r.shape[1], 3), BACKGROUND, dtype=np.uint8)]) for r in chunk]
        columns.append(np.vstack([header] + spaced))
    items: List[LegendItem] = [
        (None, f"{len(step.views)} of {step.num_detections} detections, best first"),
        (MODEL_MASK_COLOR, "the model's mask, pasted into the original image and thresholded"),
        (GT_MASK_COLOR, "the ground-truth mask of the object whose box overlaps the detection's most"),
    ]
    return compose(columns, [""] * len(columns), items, 1)


def _gap(height: int, width: int = 4) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def activation_montage(record: ActivationRecord, tile: int = 128, columns: int = 4) -> Figure:
    """Step 5: the record's chosen channels, each on its own scale (viridis, NaN magenta), with
    its statistics and flags in the legend."""
    tiles = []
    if record.channels is not None:
        for index, channel in zip(record.channel_indices, record.channels):
            picture = fit(heatmap(channel), tile)
            put_text(picture, f"ch {index}", (4, 14), boxed=True)
            tiles.append(picture)
    body = grid(tiles, columns) if tiles else _blank_tile(tile, "not a feature map")
    flags = ", ".join(record.flags) if record.flags else "none"
    items: List[LegendItem] = [
        (None, f"{record.name} {list(record.shape)}" + (f" (also {', '.join(record.also)})" if record.also else "")),
        (None, f"mean {record.mean:.4g}  std {record.std:.4g}  min {record.min:.4g}  max {record.max:.4g}"),
        (None, f"zeros {record.zero_fraction:.1%}  dead channels {record.dead_channel_fraction:.1%}"),
        (None, f"NaN {record.num_nan}  Inf {record.num_inf}"),
        (FLAG_COLOR if record.flags else None, f"flags: {flags}"),
    ]
    return compose([body], [f"{record.name}: {len(tiles)} channels of largest spread"], items, 1)


def _short_name(name: str, width: int) -> str:
    if text_width(name) <= width:
        return name
    while name and text_width("..." + name) > width:
        name = name[1:]
    return "..." + name


def weight_histogram(record: WeightRecord, width: int = 300, height: int = 118) -> np.ndarray:
    """One layer's cell: its name, a histogram of its weights (bar heights linear in counts),
    its shape, std and range, with a red frame and the flags when it is flagged."""
    cell = np.full((height, width, 3), (36, 36, 36), dtype=np.uint8)
    put_text(cell, _short_name(record.name, width - 8), (4, 14))
    top, bottom = 22, height - 38
    counts = record.histogram.astype(np.float64)
    if counts.size and counts.max() > 0:
        bar_width = (width - 8) / len(counts)
        for i, count in enumerate(counts):
            bar = int(round((bottom - top) * count / counts.max()))
            if bar:
                x0 = int(4 + i * bar_width)
                x1 = max(x0, int(4 + (i + 1) * bar_width) - 1)
                cv2.rectangle(cell, (x0, bottom - bar), (x1, bottom), (90, 160, 230), cv2.FILLED)
    put_text(cell, f"{list(record.shape)} std {record.std:.3g}", (4, height - 22))
    put_text(cell, f"[{record.min:.3g}, {record.max:.3g}]", (4, height - 6))
    if record.flags:
        cv2.rectangle(cell, (0, 0), (width - 1, height - 1), FLAG_COLOR, 2)
        label = ", ".join(record.flags)
        put_text(cell, label, (width - text_width(label) - 6, height - 6), FLAG_COLOR)
    return cell


def weight_pages(records: Sequence[WeightRecord], per_page: int = 40, columns: int = 5) -> List[Figure]:
    """Step 6: the layers' histograms, ``per_page`` cells a page, in model order."""
    pages = []
    count = max(1, math.ceil(len(records) / per_page))
    for page in range(count):
        chunk = records[page * per_page : (page + 1) * per_page]
        body = grid([weight_histogram(r) for r in chunk], columns)
        flagged = [r for r in chunk if r.flags]
        items: List[LegendItem] = [
            (None, f"layers {page * per_page + 1}-{page * per_page + len(chunk)} of {len(records)}: weight histograms"),
            (FLAG_COLOR if flagged else None, f"flagged on this page: {len(flagged)}"),
        ]
        pages.append(compose([body], [f"weights, page {page + 1} of {count}"], items, 1))
    return pages


__all__ = [
    "Figure",
    "GT_COLOR",
    "IGNORED_COLOR",
    "NAN_COLOR",
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "activation_montage",
    "anchor_labels_figure",
    "canvas_scale",
    "compose",
    "draw_box",
    "draw_dotted_box",
    "heatmap",
    "legend",
    "masks_figure",
    "proposals_figure",
    "refinement_figure",
    "top_anchors_figure",
    "weight_pages",
]
