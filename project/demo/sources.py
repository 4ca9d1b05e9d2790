"""Where the demo's frames come from: image files (files, globs, folders) or a video (a file or
a webcam). Each source yields ``Frame``s in order; an image that cannot be read is a frame with
an ``error`` and no image, so it is counted and reported, never dropped silently."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..data import BadAnnotationError
from ..data.detection_utils import read_image
from ..engine.cli import CommandLineError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".jp2", ".pgm", ".ppm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv"}


class DemoInputError(CommandLineError):
    """An input the demo cannot use (a missing path, a video that does not open)."""


@dataclass
class Frame:
    """One image or video frame: ``index`` in the run, ``name`` (the image's path relative to
    the folder it was found in, or ``frame_000123`` for video), ``image`` as (H, W, 3) BGR
    uint8, or ``error`` saying why there is none."""

    index: int
    name: str
    image: Optional[np.ndarray] = None
    error: Optional[str] = None


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _images_in_folder(folder: Path, extensions: AbstractSet[str]) -> List[Tuple[Path, str]]:
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions]
    return [(p, p.relative_to(folder).as_posix()) for p in sorted(files)]


def expand_image_inputs(
    inputs: Sequence[str], extensions: AbstractSet[str] = IMAGE_EXTENSIONS
) -> List[Tuple[Path, str]]:
    """``(path, name)`` of every image named by ``inputs``: files as given, glob patterns
    (``**`` recursive) sorted, folders searched recursively and sorted for files with one of
    ``extensions`` (lower case, with the dot), each image's ``name`` relative to its folder (the
    file name for files and globs). Raises ``DemoInputError`` for an input that matches nothing."""
    found: List[Tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = _images_in_folder(path, extensions)
            if not images:
                raise DemoInputError(f"{item}: the folder holds no images ({', '.join(sorted(extensions))})")
            found.extend(images)
        elif path.is_file():
            found.append((path, path.name))
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                raise DemoInputError(f"{item}: the pattern matches no file")
            found.extend((Path(p), Path(p).name) for p in matches)
        else:
            raise DemoInputError(f"{item}: no such file or folder")
    return found


class ImageFiles:
    """Frames read from image files (any depth and channel count ``read_image`` accepts)."""

    def __init__(self, inputs: Sequence[str]):
        self.files = expand_image_inputs(inputs)
        self.fps: Optional[float] = None

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, (path, name) in enumerate(self.files):
            try:
                yield Frame(index, name, image=read_image(str(path), "BGR"))
            except BadAnnotationError as e:
                yield Frame(index, name, error=str(e))


def _timestamp_fps(path: str) -> Optional[float]:
    """Frames per second from the time stamps of the first frames, or None when they say
    nothing. Headers can be wrong: the shared street clip's says 50 frames/s while its frames
    are 40 ms apart, and a video written at the header's rate would play twice as fast."""
    capture = cv2.VideoCapture(path)
    stamps = []
    try:
        for _ in range(3):
            if not capture.read()[0]:
                break
            stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    finally:
        capture.release()
    if len(stamps) < 3 or stamps[2] <= stamps[1]:
        return None
    return 1000.0 / (stamps[2] - stamps[1])


class VideoFrames:
    """Frames of a video file, or of a webcam given by its device index. Raises
    ``DemoInputError`` when the video cannot be opened."""

    def __init__(self, source: Union[str, int]):
        self.source = source
        if isinstance(source, str) and not os.path.isfile(source):
            raise DemoInputError(f"{source}: no such video file")
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            what = f"webcam {source}" if isinstance(source, int) else source
            raise DemoInputError(f"{what}: cannot open the video (unsupported format, or no such device)")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        measured = _timestamp_fps(source) if isinstance(source, str) else None
        self.fps = measured or (fps if fps and fps > 0 else 30.0)
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: Optional[int] = count if count > 0 and isinstance(source, str) else None
        self.name = Path(source).stem if isinstance(source, str) else f"webcam{source}"

    def __len__(self) -> int:
        return self.frame_count or 0

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, image = self.capture.read()
                if not ok:
                    return
                yield Frame(index, f"frame_{index:06d}", image=image)
                index += 1
        finally:
            self.capture.release()
