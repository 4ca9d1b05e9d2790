"""Text labels ("nucleus 97%") placed next to their boxes so they stay readable on dense images.

Each label goes to the first free place among: above the box, inside its top edge, below it.
A coarse occupancy grid of already placed labels keeps labels from covering each other; a
label with no free place is left out and counted, never drawn over another.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def font_scale(image_size: Sequence[int]) -> float:
    """OpenCV font scale giving text about 1.6% of the image's shorter side high (11 px at 720p)."""
    return max(0.35, 0.45 * min(image_size[:2]) / 720)


def label_texts(
    classes: Optional[Sequence[int]], scores: Optional[Sequence[float]], class_names: Optional[Sequence[str]]
) -> Optional[List[str]]:
    """Per instance "name score%" (or only one of them), or None when there is nothing to say.
    Classes without a name are written as their id."""
    if classes is None and scores is None:
        return None
    count = len(classes) if classes is not None else len(scores)
    texts = []
    for i in range(count):
        parts = []
        if classes is not None:
            c = int(classes[i])
            parts.append(class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c))
        if scores is not None:
            parts.append(f"{float(scores[i]) * 100:.0f}%")
        texts.append(" ".join(parts))
    return texts


class LabelPlacer:
    """Finds free places for label rectangles on an (H, W) image and marks them taken.

    The image is divided into square cells of ``cell`` pixels; each row of cells is one Python
    integer with a bit set per taken cell, so testing a rectangle is a few integer operations."""

    def __init__(self, image_size: Tuple[int, int], cell: int):
        self.height, self.width = image_size
        self.cell = max(1, cell)
        self._taken_rows = [0] * (self.height // self.cell + 2)

    def _span(self, x0: int, y0: int, x1: int, y1: int) -> Tuple[range, int]:
        """The cell rows of a rectangle and the bits of its cell columns."""
        c = self.cell
        first, last = max(0, x0) // c, max(0, x1 - 1) // c
        return range(max(0, y0) // c, max(0, y1 - 1) // c + 1), ((1 << (last - first + 1)) - 1) << first

    def place(self, box: Sequence[float], size: Tuple[int, int]) -> Optional[Tuple[int, int]]:
        """Top-left corner of a free (w, h) rectangle next to the XYXY ``box``, or None."""
        w, h = size
        bx0, by0, _, by1 = (int(round(v)) for v in box)
        x = min(max(0, bx0), max(0, self.width - w))
        rows_taken = self._taken_rows
        for y in (by0 - h, by0, by1):
            if y < 0 or y + h > self.height:
                continue
            rows, bits = self._span(x, y, x + w, y + h)
            if not any(rows_taken[r] & bits for r in rows):
                for r in rows:
                    rows_taken[r] |= bits
                return x, y
        return None


def draw_labels(
    image: np.ndarray, boxes: np.ndarray, texts: Sequence[str], colors: np.ndarray, order: Sequence[int]
) -> int:
    """Write ``texts[i]`` in white on a box of ``colors[i]`` next to ``boxes[i]`` (XYXY), placing
    instances in ``order`` first come first served. Returns how many labels found no free place
    and were left out."""
    scale = font_scale(image.shape)
    thickness = 1 if scale < 1.0 else 2
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    pad = max(1, text_h // 5)
    placer = LabelPlacer(image.shape[:2], cell=max(2, (text_h + baseline) // 2))
    hidden = 0
    corners = np.rint(boxes).astype(np.int64).tolist()  # Python ints: rounding numpy floats one by one is slow
    widths = {text: cv2.getTextSize(text, FONT, scale, thickness)[0][0] for text in set(texts)}
    label_colors = colors.tolist()
    for i in order:
        text_w = widths[texts[i]]
        size = (text_w + 2 * pad, text_h + baseline + 2 * pad)
        corner = placer.place(corners[i], size)
        if corner is None:
            hidden += 1
            continue
        x, y = corner
        cv2.rectangle(image, (x, y), (x + size[0] - 1, y + size[1] - 1), label_colors[i], cv2.FILLED)
        cv2.putText(image, texts[i], (x + pad, y + pad + text_h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return hidden
