"""project.tiling.readers: windows read from real TIFF, OpenSlide and PNG/JPEG files equal the
numpy arrays the files were written from; only the tiles a window touches are decoded; every
file that cannot be read gives one clear error."""

from __future__ import annotations

import importlib.util
import re
import sys

import cv2
import numpy as np
import pytest
import tifffile

from project.tiling.readers import LargeImageError, TiffLargeImage, open_large_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (300, 500, 3), dtype=np.uint8)

# (x, y, width, height): one pixel, across tile borders, along each edge, the whole image.
WINDOWS = [
    (0, 0, 1, 1),
    (499, 299, 1, 1),
    (63, 63, 2, 2),
    (60, 100, 130, 80),
    (436, 236, 64, 64),
    (0, 299, 500, 1),
    (499, 0, 1, 300),
    (0, 0, 500, 300),
]


def _assert_windows_equal(image, array, windows=WINDOWS, level=0):
    for x, y, width, height in windows:
        region = image.read_region(x, y, width, height, level)
        assert region.dtype == array.dtype
        np.testing.assert_array_equal(region, array[y : y + height, x : x + width], err_msg=f"window {x, y}")


@pytest.mark.parametrize(
    "array, options",
    [
        (RGB, {"tile": (64, 64), "compression": "zlib", "photometric": "rgb"}),
        (RGB, {"tile": (256, 256), "photometric": "rgb", "bigtiff": True}),
        (RGB, {"rowsperstrip": 7, "photometric": "rgb"}),
        (RGB, {"rowsperstrip": 16, "compression": "zlib", "predictor": True, "photometric": "rgb"}),
        (RGB, {"tile": (64, 64), "photometric": "rgb", "planarconfig": "separate"}),
        (RNG.integers(0, 65536, (300, 500), dtype=np.uint16), {"tile": (64, 64), "compression": "zlib"}),
        (RNG.integers(0, 65536, (300, 500), dtype=np.uint16), {"bigtiff": True, "rowsperstrip": 32}),
        (RNG.random((300, 500), dtype=np.float32), {"tile": (128, 64), "compression": "zlib"}),
        (RNG.integers(0, 256, (300, 500, 4), dtype=np.uint8), {"tile": (64, 64), "extrasamples": "unassalpha"}),
    ],
    ids=[
        "rgb-tiled-zlib",
        "rgb-bigtiff-tile256",
        "rgb-striped",
        "rgb-striped-zlib-predictor",
        "rgb-planar-separate",
        "uint16-tiled-zlib",
        "uint16-bigtiff-striped",
        "float32-tiled",
        "rgba-tiled",
    ],
)
def test_tiff_windows_equal_the_written_array(tmp_path, array, options):
    path = str(tmp_path / "image.tif")
    separate = options.get("planarconfig") == "separate"  # tifffile then takes samples first
    tifffile.imwrite(path, np.moveaxis(array, 2, 0) if separate else array, **options)
    with open_large_image(path) as image:
        assert isinstance(image, TiffLargeImage)
        assert (image.format, image.levels, image.height, image.width) == ("tiff", [(300, 500)], 300, 500)
        assert image.channels == (1 if array.ndim == 2 else array.shape[2])
        assert image.dtype == array.dtype
        _assert_windows_equal(image, array)


def _write_subifd_pyramid(path, array, **options):
    with tifffile.TiffWriter(path, **options) as tif:
        tif.write(array, subifds=2, tile=(64, 64), compression="zlib", photometric="rgb")
        tif.write(array[::2, ::2], subfiletype=1, tile=(64, 64), compression="zlib", photometric="rgb")
        tif.write(array[::4, ::4], subfiletype=1, tile=(64, 64), compression="zlib", photometric="rgb")


def test_tiff_subifd_pyramid_levels_read_the_downsampled_arrays(tmp_path):
    path = str(tmp_path / "pyramid.tif")
    _write_subifd_pyramid(path, RGB)
    with open_large_image(path) as image:
        assert image.levels == [(300, 500), (150, 250), (75, 125)]
        _assert_windows_equal(image, RGB[::2, ::2], [(0, 0, 250, 150), (60, 70, 100, 50), (249, 149, 1, 1)], 1)
        _assert_windows_equal(image, RGB[::4, ::4], [(0, 0, 125, 75)], 2)
        with pytest.raises(ValueError, match=r"x=0, y=0, width=251, height=10 .* level 1, which is 250 pixels wide"):
            image.read_region(0, 0, 251, 10, level=1)


def test_ome_tiff_is_named_and_its_sub_resolution_read(tmp_path):
    path = str(tmp_path / "pyramid.ome.tif")
    _write_subifd_pyramid(path, RGB, ome=True)
    with open_large_image(path) as image:
        assert image.format == "ome-tiff"
        assert image.levels == [(300, 500), (150, 250), (75, 125)]
        _assert_windows_equal(image, RGB[::2, ::2], [(10, 20, 200, 100)], 1)


def test_a_window_decodes_only_the_tiles_it_touches(tmp_path, monkeypatch):
    array = (np.add.outer(np.arange(4096), 3 * np.arange(4096)) % 251).astype(np.uint8)
    path = str(tmp_path / "large.tif")
    tifffile.imwrite(path, array, tile=(256, 256), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tiles = {(page.dataoffsets[i], page.databytecounts[i]): i for i in range(len(page.dataoffsets))}
    reads = []
    read = tifffile.FileHandle.read

    def read_and_record(handle, size=-1):
        reads.append((handle.tell(), size))
        return read(handle, size)

    monkeypatch.setattr(tifffile.FileHandle, "read", read_and_record)
    with open_large_image(path) as image:
        reads.clear()
        region = image.read_region(200, 500, 100, 100)
        np.testing.assert_array_equal(region, array[500:600, 200:300])
        # rows 1-2 and columns 0-1 of the 16 x 16 grid of tiles, and nothing else
        assert sorted(tiles.get(r) for r in reads) == [16, 17, 32, 33]
        reads.clear()
        image.read_region(300, 300, 10, 10)
        assert [tiles.get(r) for r in reads] == [17]


def test_a_strip_larger_than_the_memory_limit_is_refused(tmp_path):
    path = str(tmp_path / "one_strip.tif")
    tifffile.imwrite(path, RGB, photometric="rgb")  # one strip holding the whole image
    with pytest.raises(LargeImageError, match=r"one_strip\.tif.*strips are 500 x 300 pixels.*tiled, pyramidal TIFF"):
        open_large_image(path, max_in_memory_pixels=100_000)


def test_an_unstored_tile_reads_as_zeros_and_a_damaged_one_is_named(tmp_path):
    path = str(tmp_path / "damaged.tif")
    tifffile.imwrite(path, RGB, tile=(64, 64), compression="zlib", photometric="rgb")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        counts = list(tags["TileByteCounts"].value)
        counts[5] = 0  # tile 5 (columns 320-383 of the first row of tiles) is not stored
        tags["TileByteCounts"].overwrite(counts)
        damaged_offset = tags["TileOffsets"].value[3]
    with open(path, "r+b") as f:
        f.seek(damaged_offset)
        f.write(b"not zlib data")
    with open_large_image(path) as image:
        expected = RGB[:64, 300:400].copy()
        expected[:, 20:84] = 0
        np.testing.assert_array_equal(image.read_region(300, 0, 100, 64), expected)
        with pytest.raises(LargeImageError, match=r"damaged\.tif: cannot decode tile 3 of level 0 .*damaged"):
            image.read_region(190, 0, 10, 10)


@pytest.mark.skipif(importlib.util.find_spec("imagecodecs") is not None, reason="imagecodecs decodes LZW")
def test_a_compression_that_needs_imagecodecs_names_it_and_the_package(tmp_path):
    path = str(tmp_path / "lzw.tif")
    tifffile.imwrite(path, RGB, tile=(64, 64), photometric="rgb")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(5)  # LZW, which tifffile alone cannot decode
    with pytest.raises(LargeImageError, match=r"lzw\.tif.*LZW.*pip install imagecodecs"):
        open_large_image(path)


def test_openslide_reads_a_generic_tiled_tiff_as_rgb(tmp_path):
    pytest.importorskip("openslide")
    path = str(tmp_path / "slide.tif")
    tifffile.imwrite(path, RGB, tile=(64, 64), compression="zlib", photometric="rgb")
    with open_large_image(path, backend="openslide") as image:
        assert (image.format, image.levels, image.channels, image.dtype) == ("openslide", [(300, 500)], 3, np.uint8)
        _assert_windows_equal(image, RGB)


def test_a_slide_without_openslide_names_the_extra_to_install(tmp_path, monkeypatch):
    path = tmp_path / "scan.svs"
    tifffile.imwrite(path, RGB, tile=(64, 64), photometric="rgb")
    monkeypatch.setitem(sys.modules, "openslide", None)
    with pytest.raises(LargeImageError, match=r'scan\.svs: Aperio SVS .*pip install "project\[slides\]"'):
        open_large_image(str(path))


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "grey16.png"])
def test_ordinary_images_are_read_whole_in_rgb_order(tmp_path, name):
    array = RNG.integers(0, 65536, (300, 500), dtype=np.uint16) if name == "grey16.png" else RGB
    path = str(tmp_path / name)
    cv2.imwrite(path, array)  # OpenCV writes BGR: the file's red is the array's last channel
    expected = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    expected = expected if expected.ndim == 2 else expected[:, :, ::-1]
    with open_large_image(path) as image:
        assert (image.format, image.levels, image.channels) == (
            name.split(".")[1].replace("jpg", "jpeg"),
            [(300, 500)],
            expected.shape[2] if expected.ndim == 3 else 1,
        )
        _assert_windows_equal(image, expected)


def test_a_png_larger_than_the_memory_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), RGB[:100, :100])
    with pytest.raises(LargeImageError) as raised:
        open_large_image(str(path), max_in_memory_pixels=1000)
    message = str(raised.value)
    assert str(path) in message and "PNG" in message and "100 x 100" in message
    assert "cannot be read tile by tile" in message and "tiled, pyramidal TIFF" in message


def test_missing_and_undecodable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent.png"))):
        open_large_image(str(tmp_path / "absent.png"))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(LargeImageError, match=r"garbage\.png: cannot decode .*expected a TIFF"):
        open_large_image(str(garbage))
    broken_tiff = tmp_path / "broken.tif"
    broken_tiff.write_bytes(b"II*\x00 and then nothing sensible")
    with pytest.raises(LargeImageError, match=r"broken\.tif: not a readable TIFF"):
        open_large_image(str(broken_tiff))
    with pytest.raises(ValueError, match="backend must be one of"):
        open_large_image(str(garbage), backend="vips")


def test_windows_outside_the_image_and_reads_after_close_are_refused(tmp_path):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), RGB[:40, :60])
    image = open_large_image(str(path))
    for window in [(55, 0, 10, 10), (-1, 0, 5, 5), (0, 35, 10, 10), (0, 0, 0, 5)]:
        with pytest.raises(ValueError, match=r"small\.png: the window x=.* level 0, which is 60 pixels wide and 40"):
            image.read_region(*window)
    with pytest.raises(ValueError, match=r"small\.png: there is no level 1"):
        image.read_region(0, 0, 5, 5, level=1)
    image.close()
    with pytest.raises(ValueError, match="closed"):
        image.read_region(0, 0, 5, 5)
