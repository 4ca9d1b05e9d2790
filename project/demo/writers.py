"""Where the demo's results go: annotated images, an annotated video, and per-object files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..evaluation.coco_evaluation import instances_to_coco_json
from ..structures import Instances
from ..visualization.instance_export import cutout, instance_label_image
from ..visualization.masks import as_mask_crops
from .sources import DemoInputError

VIDEO_CODECS = ("mp4v", "h264")


def write_image(path: Path, image_bgr: np.ndarray) -> None:
    """Write an image, creating its folder; ``OSError`` naming the file when that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image_bgr):
        raise OSError(f"{path}: could not write the image (unknown extension or unwritable folder)")


class VideoWriter:
    """Writes BGR frames of one size to ``path`` at ``fps``: MPEG-4 Part 2 (``mp4v``) through
    OpenCV, which every OpenCV wheel can encode, or H.264 through PyAV (``pip install av``),
    which browsers and phones play. The file is opened at the first frame."""

    def __init__(self, path: Path, fps: float, codec: str = "mp4v"):
        if codec not in VIDEO_CODECS:
            raise DemoInputError(f"video codec must be one of {VIDEO_CODECS}, got {codec!r}")
        if codec == "h264":
            try:
                import av  # noqa: F401
            except ImportError:
                raise DemoInputError(
                    "H.264 output needs PyAV: pip install av (or pip install 'maskrcnn-project[video]'); "
                    "the default codec mp4v needs nothing more"
                ) from None
        self.path, self.fps, self.codec = Path(path), float(fps), codec
        self.frames = 0
        self._cv_writer: Any = None
        self._container: Any = None
        self._stream: Any = None

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == "mp4v":
            self._cv_writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._cv_writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write an mp4v video here (check the extension: .mp4)")
            return
        from fractions import Fraction

        import av

        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"

    def write(self, frame_bgr: np.ndarray) -> None:
        height, width = frame_bgr.shape[:2]
        if self.frames == 0:
            self._open(width, height)
        if self._cv_writer is not None:
            self._cv_writer.write(frame_bgr)
        else:
            import av

            even = np.ascontiguousarray(frame_bgr[: self._stream.height, : self._stream.width])
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(even, format="bgr24")):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._cv_writer is not None:
            self._cv_writer.release()
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


class InstanceWriter:
    """Per image, under ``folder``: ``<stem>_labels.png`` (uint16 instance ids, 0 = background),
    ``<stem>_results.json`` (COCO results with RLE masks and the model's class ids, plus
    ``file_name``), and ``<stem>_instances/`` with ``<k>_<class>.png`` (RGBA cut-out cropped to
    the box, transparent outside the mask) and ``<k>_<class>_mask.png`` (0/255) per object,
    ``k`` the instance's index in the predictions (and its id in the label image minus one)."""

    def __init__(self, folder: Path, class_names: Optional[Sequence[str]] = None):
        self.folder = Path(folder)
        self.class_names = class_names
        self.objects = 0

    def _class_name(self, class_id: int) -> str:
        if self.class_names is not None and 0 <= class_id < len(self.class_names):
            return _safe(self.class_names[class_id])
        return f"class{class_id}"

    def write(self, name: str, image_bgr: np.ndarray, instances: Instances, image_index: int) -> None:
        stem = self.folder / Path(name).with_suffix("")
        crops = as_mask_crops(instances.pred_masks, instances.image_size) if instances.has("pred_masks") else []
        results: List[Dict[str, Any]] = instances_to_coco_json(instances, image_index)
        for result in results:
            result["file_name"] = name
        stem.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{stem}_results.json", "w") as f:
            json.dump(results, f)
        write_image(Path(f"{stem}_labels.png"), instance_label_image(crops, instances.image_size))
        folder = Path(f"{stem}_instances")
        boxes = instances.pred_boxes.tensor.tolist() if len(instances) else []
        classes = instances.pred_classes.tolist() if len(instances) else []
        for k, (crop, box, class_id) in enumerate(zip(crops, boxes, classes)):
            label = f"{k:03d}_{self._class_name(class_id)}"
            rgba = cutout(image_bgr, crop, box)
            write_image(folder / f"{label}.png", rgba)
            write_image(folder / f"{label}_mask.png", (rgba[..., 3] > 0).astype(np.uint8) * 255)
            self.objects += 1
        os.makedirs(folder, exist_ok=True)
