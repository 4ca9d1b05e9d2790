"""Readers for images far larger than memory: whole-slide scans, mosaics, aerial images.

``open_large_image(path)`` returns a ``LargeImage``. Its ``read_region`` decodes only what one
window needs, so the memory a read takes grows with the window, not with the image:

- TIFF, BigTIFF and OME-TIFF (tifffile): only the tiles, or strips, that the window touches are
  read from disk and decoded; sub-resolutions (SubIFDs or pyramid pages) are the coarser levels.
- Whole-slide formats (.svs, .ndpi, .mrxs, .scn, .vms, .vmu, .bif, .svslide) through OpenSlide,
  the optional ``slides`` extra; ``backend="openslide"`` also sends a generic tiled TIFF there.
- Anything else OpenCV decodes (PNG, JPEG, BMP, ...) cannot be read piece by piece: it is
  decoded whole, and refused when its header says it has more than ``max_in_memory_pixels``.

Coordinates are pixels of the level read: ``x`` counts columns from the left, ``y`` rows from the
top. Level 0 is the full resolution; each further level is coarser. Colour comes in RGB(A) order,
never BGR.
"""

from __future__ import annotations

import math
import operator
import os
import struct
import threading
from abc import ABC, abstractmethod
from typing import Any, List, Optional, Tuple

import cv2
import numpy as np
import tifffile
from PIL import Image

# 200 megapixels: 600 MB as 8-bit RGB, about what a workstation decodes whole without trouble.
DEFAULT_MAX_IN_MEMORY_PIXELS = 200_000_000

# Extensions sent to OpenSlide, with the name of the format for messages.
WHOLE_SLIDE_FORMATS = {
    ".svs": "Aperio SVS",
    ".ndpi": "Hamamatsu NDPI",
    ".mrxs": "MIRAX",
    ".scn": "Leica SCN",
    ".vms": "Hamamatsu VMS",
    ".vmu": "Hamamatsu VMU",
    ".bif": "Ventana BIF",
    ".svslide": "Sakura SVSlide",
}

BACKENDS = ("auto", "tifffile", "openslide", "opencv")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}
_SLIDES_EXTRA = 'pip install "project[slides]" (which installs openslide-python and openslide-bin)'
# Pillow's decompression-bomb limit is lifted while a header is read; one lock keeps the
# save-and-restore of that global from interleaving between threads.
_PIL_LIMIT_LOCK = threading.Lock()


class LargeImageError(ValueError):
    """An image file that cannot be read as asked (unsupported layout or codec, a missing optional
    package, too large to decode whole). The message is one paragraph: the file, the problem, and
    what to do about it."""


class LargeImage(ABC):
    """An image read window by window.

    ``levels`` holds the (height, width) of each resolution level, level 0 first (full
    resolution), then coarser ones. ``channels`` is 1 (grey), 3 (RGB) or 4 (RGBA); ``dtype`` is
    the pixel type ``read_region`` returns. Use as a context manager, or call ``close``.
    ``channel_order`` is the order of colour channels: "RGB" for files, whatever an array was in.
    """

    channel_order = "RGB"

    def __init__(self, path: str, format: str, levels: List[Tuple[int, int]], channels: int, dtype: Any) -> None:
        self.path = path
        self.format = format
        self.levels = levels
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self._closed = False

    @property
    def height(self) -> int:
        """Rows of level 0."""
        return self.levels[0][0]

    @property
    def width(self) -> int:
        """Columns of level 0."""
        return self.levels[0][1]

    def read_region(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """The window whose top-left pixel is column ``x``, row ``y`` of ``level``, ``width``
        columns by ``height`` rows, all in that level's pixels: a new (height, width) array for
        grey, (height, width, channels) for colour in RGB(A) order, of ``self.dtype``.

        Raises ``ValueError`` naming the file, level, window and the level's size when the window
        does not lie wholly inside the level (or is empty), or the level does not exist.
        """
        x, y, width, height, level = (operator.index(v) for v in (x, y, width, height, level))
        self._check_window(x, y, width, height, level)
        return self._read(x, y, width, height, level)

    def close(self) -> None:
        """Release the file; reading afterwards raises ``ValueError``."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> LargeImage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, format={self.format!r}, levels={self.levels}, "
            f"channels={self.channels}, dtype={self.dtype})"
        )

    def _check_window(self, x: int, y: int, width: int, height: int, level: int) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the image was closed; open it again to read from it")
        if not 0 <= level < len(self.levels):
            raise ValueError(
                f"{self.path}: there is no level {level}; the image has {len(self.levels)} level(s), "
                f"(height, width) {self.levels}"
            )
        level_height, level_width = self.levels[level]
        if width < 1 or height < 1 or x < 0 or y < 0 or x + width > level_width or y + height > level_height:
            raise ValueError(
                f"{self.path}: the window x={x}, y={y}, width={width}, height={height} does not lie inside "
                f"level {level}, which is {level_width} pixels wide and {level_height} high"
            )

    @abstractmethod
    def _read(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        """``read_region`` for a window already checked to lie inside the level."""

    @abstractmethod
    def _release(self) -> None:
        """Close the file or free the pixels held."""


class TiffLargeImage(LargeImage):
    """A TIFF, BigTIFF or OME-TIFF read through tifffile, one tile or strip at a time.

    The levels are those of the file's first series (its SubIFDs or pyramid pages); of a series
    with several planes (a z-stack, a time series, channels stored as pages), the first plane.
    Tiles and strips are decoded one at a time, so a read holds the window plus one segment.
    Compression none, deflate/zlib, LZMA and PackBits decode with tifffile alone; others (JPEG,
    LZW, JPEG 2000, ...) need the ``imagecodecs`` package.
    """

    def __init__(self, path: str, max_in_memory_pixels: int = DEFAULT_MAX_IN_MEMORY_PIXELS) -> None:
        self._tif, self._pages = _parse_tiff(path)
        self._lock = threading.Lock()
        try:
            for index, page in enumerate(self._pages):
                _check_tiff_page(path, page, index, self._pages[0], max_in_memory_pixels)
        except BaseException:
            self._tif.close()
            raise
        first = self._pages[0]
        super().__init__(
            path,
            "ome-tiff" if self._tif.is_ome else "tiff",
            [(page.imagelength, page.imagewidth) for page in self._pages],
            first.samplesperpixel,
            first.dtype.newbyteorder("="),
        )

    def _read(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        page = self._pages[level]
        out = np.empty((height, width, self.channels), self.dtype)
        separate = page.planarconfig == 2
        for index in _segments_in_window(page, x, y, width, height):
            segment, (plane, _, top, left, _), shape = self._decode(page, index, level)
            rows = segment.shape[1] if segment is not None else shape[1]
            columns = segment.shape[2] if segment is not None else shape[2]
            y0, y1 = max(top, y), min(top + rows, y + height)
            x0, x1 = max(left, x), min(left + columns, x + width)
            samples = slice(plane, plane + 1) if separate else slice(None)
            target = out[y0 - y : y1 - y, x0 - x : x1 - x, samples]
            if segment is None:
                target[...] = page.nodata
            else:
                target[...] = segment[0, y0 - top : y1 - top, x0 - left : x1 - left]
        return out[:, :, 0] if self.channels == 1 else out

    def _decode(self, page: tifffile.TiffPage, index: int, level: int) -> Tuple[Any, Tuple[int, ...], Tuple[int, ...]]:
        """tifffile's decoded segment ``index`` (None where the file stores none), its position
        (plane, depth, row, column, sample) and its shape (depth, rows, columns, samples)."""
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        data = None
        if offset and count:
            with self._lock:
                self._tif.filehandle.seek(offset)
                data = self._tif.filehandle.read(count)
        try:
            return page.decode(data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        except ImportError:
            raise _codec_error(self.path, page) from None
        except Exception as e:  # codecs raise their own types (zlib.error, ...) on damaged data
            kind = "tile" if page.is_tiled else "strip"
            raise LargeImageError(
                f"{self.path}: cannot decode {kind} {index} of level {level} ({type(e).__name__}: {e}); the file "
                "may be damaged or truncated"
            ) from None

    def _release(self) -> None:
        self._tif.close()


def _parse_tiff(path: str) -> Tuple[tifffile.TiffFile, List[tifffile.TiffPage]]:
    """The open file and the first page of each level of its first series."""
    tif = None
    try:
        tif = tifffile.TiffFile(path)
        pages = [level.pages[0].aspage() for level in tif.series[0].levels] if tif.series else []
    except (ValueError, EOFError, IndexError, KeyError, struct.error) as e:  # TiffFileError is a ValueError
        if tif is not None:
            tif.close()
        raise LargeImageError(f"{path}: not a readable TIFF file ({e}); expected a TIFF, BigTIFF or OME-TIFF") from None
    if not pages:
        tif.close()
        raise LargeImageError(f"{path}: not a readable TIFF file (it holds no image); expected a TIFF image")
    return tif, pages


def _segments_in_window(page: tifffile.TiffPage, x: int, y: int, width: int, height: int) -> List[int]:
    """Indices, into the page's data offsets, of the tiles or strips the window touches (for
    planar-separate pages, in every sample plane)."""
    segment_height, segment_width, across, down = _segment_grid(page)
    planes = page.samplesperpixel if page.planarconfig == 2 else 1
    rows = range(y // segment_height, (y + height - 1) // segment_height + 1)
    columns = range(x // segment_width, (x + width - 1) // segment_width + 1)
    per_plane = across * down
    return [plane * per_plane + row * across + column for plane in range(planes) for row in rows for column in columns]


def _segment_grid(page: tifffile.TiffPage) -> Tuple[int, int, int, int]:
    """(height, width) of the page's tiles, or of its strips (full rows), and how many of them
    lie across and down one sample plane."""
    if page.is_tiled:
        height, width = page.tilelength, page.tilewidth
    else:
        height, width = page.rowsperstrip, page.imagewidth
    return height, width, math.ceil(page.imagewidth / width), math.ceil(page.imagelength / height)


def _check_tiff_page(
    path: str, page: tifffile.TiffPage, level: int, first: tifffile.TiffPage, max_in_memory_pixels: int
) -> None:
    """Raise ``LargeImageError`` unless this reader can decode ``page`` (level ``level``)
    segment by segment, with the same samples and pixel type as level 0 (``first``)."""
    where = f"{path} (level {level})"
    if page.imagedepth > 1:
        raise LargeImageError(f"{where}: a volumetric TIFF ({page.imagedepth} slices deep) is not supported")
    if page.samplesperpixel not in (1, 3, 4):
        raise LargeImageError(
            f"{where}: {page.samplesperpixel} samples per pixel; expected 1 (grey), 3 (RGB) or 4 (RGBA)"
        )
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    decoded_as_rgb = photometric == tifffile.PHOTOMETRIC.YCBCR and page.compression in _JPEG_COMPRESSIONS
    if photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB) and not decoded_as_rgb:
        raise LargeImageError(
            f"{where}: colour model {photometric.name} is not supported; expected grey (MINISBLACK) or RGB"
        )
    if page.dtype is None or page.dtype.kind not in "uif":
        raise LargeImageError(
            f"{where}: {page.bitspersample}-bit samples of format {page.sampleformat} are not supported; "
            "expected unsigned or signed integers or floats (uint8, uint16, float32, ...)"
        )
    if (page.samplesperpixel, page.dtype) != (first.samplesperpixel, first.dtype):
        raise LargeImageError(
            f"{where}: {page.samplesperpixel} samples of {page.dtype} per pixel, but level 0 has "
            f"{first.samplesperpixel} of {first.dtype}"
        )
    if page.compression not in tifffile.TIFF.DECOMPRESSORS or page.predictor not in tifffile.TIFF.UNPREDICTORS:
        raise _codec_error(path, page)
    segment_height, segment_width, across, down = _segment_grid(page)
    kind = "tiles" if page.is_tiled else "strips"
    expected = across * down * (page.samplesperpixel if page.planarconfig == 2 else 1)
    if len(page.dataoffsets) != expected or len(page.databytecounts) != expected:
        raise LargeImageError(
            f"{where}: the file lists {len(page.dataoffsets)} {kind} ({len(page.databytecounts)} byte counts) where "
            f"the image needs {expected}; it is damaged or truncated"
        )
    if segment_height * segment_width > max_in_memory_pixels:
        raise LargeImageError(
            f"{where}: its {kind} are {segment_width} x {segment_height} pixels (width x height), more than "
            f"max_in_memory_pixels={max_in_memory_pixels:,} allows, and one of them is the least that can be "
            f"decoded. {_tiled_tiff_hint(path)}"
        )


def _codec_error(path: str, page: tifffile.TiffPage) -> LargeImageError:
    codec = _enum_name(tifffile.COMPRESSION, page.compression)
    if page.predictor != 1:
        codec += f" with predictor {_enum_name(tifffile.PREDICTOR, page.predictor)}"
    return LargeImageError(
        f"{path}: its pixels are stored with compression {codec}, which tifffile cannot decode without the "
        "imagecodecs package: pip install imagecodecs. A whole-slide scan can instead be read through "
        f'OpenSlide, open_large_image(path, backend="openslide"), after {_SLIDES_EXTRA}.'
    )


def _enum_name(enum: Any, value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


class OpenSlideLargeImage(LargeImage):
    """A whole-slide image (or generic tiled TIFF) read through OpenSlide, as 8-bit RGB: OpenSlide's
    RGBA is composited over the slide's background colour (white unless the slide names one)."""

    def __init__(self, path: str, format_name: str) -> None:
        openslide = _import_openslide(path, format_name)
        try:
            self._slide = openslide.OpenSlide(path)
        except openslide.OpenSlideUnsupportedFormatError:
            raise LargeImageError(
                f"{path}: OpenSlide does not recognise this file as a {format_name} image or any other format "
                "it reads (whole-slide formats and tiled TIFF)"
            ) from None
        except openslide.OpenSlideError as e:
            raise LargeImageError(
                f"{path}: OpenSlide cannot read this {format_name} image ({e}); the file may be damaged or "
                "incomplete (a .mrxs needs its data folder beside it)"
            ) from None
        self._error_type = openslide.OpenSlideError
        background = self._slide.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR) or "FFFFFF"
        self._background = np.array([int(background[i : i + 2], 16) for i in (0, 2, 4)], np.uint16)
        levels = [(height, width) for width, height in self._slide.level_dimensions]
        super().__init__(path, "openslide", levels, 3, np.uint8)

    def _read(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        # OpenSlide places a window by its level-0 corner; rounding keeps it within half a
        # level-0 pixel of the level pixel asked for (exact for whole-number downsamples).
        downsample = self._slide.level_downsamples[level]
        try:
            region = self._slide.read_region((round(x * downsample), round(y * downsample)), level, (width, height))
        except self._error_type as e:
            raise LargeImageError(f"{self.path}: OpenSlide failed to read level {level} ({e})") from None
        rgba = np.asarray(region)
        alpha = rgba[:, :, 3:].astype(np.uint16)
        rgb = (rgba[:, :, :3] * alpha + self._background * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)

    def _release(self) -> None:
        self._slide.close()


def _import_openslide(path: str, format_name: str) -> Any:
    try:
        import openslide
    except (ImportError, OSError) as e:
        raise LargeImageError(
            f"{path}: {format_name} images are read through OpenSlide, which cannot be loaded ({e}). Install "
            f"the slides extra: {_SLIDES_EXTRA}."
        ) from None
    return openslide


class ArrayLargeImage(LargeImage):
    """An image already in memory (an (H, W) or (H, W, C) numpy array), as one level; its
    channels stay in ``channel_order`` ("RGB", "BGR" or "L"), and nothing is copied but windows."""

    def __init__(self, image: np.ndarray, path: str = "<array>", format: str = "array", channel_order: str = "RGB"):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(
                f"{path}: expected an (H, W) or (H, W, C) image with C in 1, 3, 4; got shape {image.shape}"
            )
        self._image = image
        self.channel_order = channel_order
        channels = 1 if image.ndim == 2 else image.shape[2]
        super().__init__(path, format, [image.shape[:2]], channels, image.dtype)

    def _read(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        return self._image[y : y + height, x : x + width].copy()

    def _release(self) -> None:
        self._image = None


class InMemoryLargeImage(ArrayLargeImage):
    """An image OpenCV decodes (PNG, JPEG, BMP, WebP, ...), held whole in memory as one level.

    The header is read first (by Pillow, which decodes no pixels) and the file refused when it has
    more than ``max_in_memory_pixels``; formats Pillow does not know are decoded without that check.
    EXIF orientation is applied and an alpha channel dropped, as the training data loader does.
    """

    def __init__(self, path: str, max_in_memory_pixels: int = DEFAULT_MAX_IN_MEMORY_PIXELS) -> None:
        header = _read_header(path)
        format_name = header[0] if header else os.path.splitext(path)[1].lstrip(".").upper() or "image"
        if header and header[1] * header[2] > max_in_memory_pixels:
            width, height = header[1], header[2]
            raise LargeImageError(
                f"{path}: this {format_name} image is {width} x {height} pixels (width x height, "
                f"{width * height / 1e6:.1f} megapixels), more than max_in_memory_pixels={max_in_memory_pixels:,} "
                f"allows, and {format_name} cannot be read tile by tile: it would be decoded whole. "
                f"{_tiled_tiff_hint(path)}"
            )
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
        if image is None:
            raise LargeImageError(
                f"{path}: cannot decode this file as an image; expected a TIFF, a whole-slide image "
                f"({', '.join(WHOLE_SLIDE_FORMATS)}) or an image OpenCV reads (PNG, JPEG, BMP, ...)"
            )
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        super().__init__(image, path, format_name.lower())


def _tiled_tiff_hint(path: str) -> str:
    """What to do with an image too large to decode whole: make it a tiled pyramidal TIFF."""
    stem = os.path.splitext(path)[0]
    return (
        f"Convert it to a tiled, pyramidal TIFF, which is read one tile at a time, e.g. with libvips: "
        f"vips tiffsave {path} {stem}_tiled.tif --tile --pyramid --compression deflate (or in Python, "
        f"tifffile.imwrite(..., tile=(512, 512))); a whole-slide scan opens through OpenSlide: {_SLIDES_EXTRA}."
    )


def _read_header(path: str) -> Optional[Tuple[str, int, int]]:
    """(format, width, height) from the file's header, read by Pillow without decoding pixels;
    None when Pillow does not recognise the file."""
    with _PIL_LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # the size is judged against max_in_memory_pixels instead
        try:
            with Image.open(path) as image:
                return image.format or "image", image.size[0], image.size[1]
        except (OSError, SyntaxError, ValueError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _has_tiff_magic(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def open_large_image(
    path: str, max_in_memory_pixels: int = DEFAULT_MAX_IN_MEMORY_PIXELS, backend: str = "auto"
) -> LargeImage:
    """Open ``path`` for reading window by window; see ``LargeImage.read_region``.

    ``backend``: "auto" sends the whole-slide extensions (``WHOLE_SLIDE_FORMATS``) to OpenSlide,
    files starting with a TIFF signature to tifffile and anything else to OpenCV; "tifffile",
    "openslide" or "opencv" forces one ("openslide" reads generic tiled TIFFs too, JPEG-compressed
    ones included, which tifffile decodes only with imagecodecs). ``max_in_memory_pixels`` (default 200
    megapixels) bounds what has to be decoded at once: a whole PNG or JPEG, one TIFF strip or tile.

    Raises ``FileNotFoundError`` for a missing file, ``LargeImageError`` (a ``ValueError``) for a
    file that cannot be read, saying why and what to do, ``ValueError`` for an unknown backend.
    """
    path = os.fspath(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise LargeImageError(f"{path} is a folder; expected an image file")
    extension = os.path.splitext(path)[1].lower()
    if backend == "auto":
        if extension in WHOLE_SLIDE_FORMATS:
            backend = "openslide"
        else:
            backend = "tifffile" if _has_tiff_magic(path) else "opencv"
    if backend == "openslide":
        return OpenSlideLargeImage(path, WHOLE_SLIDE_FORMATS.get(extension, "tiled TIFF"))
    if backend == "tifffile":
        return TiffLargeImage(path, max_in_memory_pixels)
    return InMemoryLargeImage(path, max_in_memory_pixels)
