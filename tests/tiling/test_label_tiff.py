"""write_label_tiff against a dense label image painted in the test, read back with tifffile."""

from __future__ import annotations

import tracemalloc
import zlib
from typing import List, Optional, Tuple

import numpy as np
import pytest
import tifffile
import torch

from project.structures import BitMasks, CroppedBitMasks, Instances, MaskCrop
from project.tiling.label_tiff import write_label_tiff


def _blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A bool (height, width) noisy ellipse, with holes and ragged edges."""
    yy, xx = np.mgrid[:height, :width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    radius = ((yy - cy) / max(cy, 0.5)) ** 2 + ((xx - cx) / max(cx, 0.5)) ** 2
    return radius + rng.normal(0, 0.2, (height, width)) < 1


def _clipped_crop(mask: np.ndarray, x0: int, y0: int, image_size: Tuple[int, int]) -> MaskCrop:
    """``mask`` placed with its top-left pixel at (x0, y0) (possibly outside), cut to the image."""
    height, width = image_size
    h, w = mask.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    return MaskCrop(mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0], cx0, cy0, image_size)


def _instances(crops: List[MaskCrop], image_size: Tuple[int, int], scores: Optional[np.ndarray]) -> Instances:
    instances = Instances(image_size, pred_masks=CroppedBitMasks(crops, image_size))
    if scores is not None:
        instances.scores = torch.as_tensor(scores, dtype=torch.float32)
    return instances


def _random_instances(seed: int, image_size: Tuple[int, int] = (1000, 1300)) -> Instances:
    """Blobs anywhere (crossing tile borders and the image edge), a cluster of overlapping ones,
    one hidden under a bigger higher-scoring blob, one empty mask, and two equal scores."""
    rng = np.random.default_rng(seed)
    height, width = image_size
    crops = []
    for _ in range(80):
        h, w = rng.integers(3, 90, size=2)
        x0, y0 = int(rng.integers(-40, width)), int(rng.integers(-40, height))
        crops.append(_clipped_crop(_blob(rng, h, w), x0, y0, image_size))
    for dx, dy in [(0, 0), (20, 5), (10, 25), (-15, 12)]:
        crops.append(_clipped_crop(_blob(rng, 60, 70), 240 + dx, 230 + dy, image_size))
    crops.append(MaskCrop(np.ones((200, 200), dtype=bool), 500, 400, image_size))
    crops.append(MaskCrop(np.ones((10, 10), dtype=bool), 550, 450, image_size))
    crops.append(MaskCrop.empty(image_size))
    scores = rng.random(len(crops))
    scores[-3], scores[-2] = 0.99, 0.5
    scores[1] = scores[0]
    return _instances(crops, image_size, scores)


def _dense_labels(instances: Instances) -> np.ndarray:
    """The reference: full (H, W) masks painted in decreasing score (row order on ties), each
    only onto pixels still 0, with id row + 1."""
    labels = np.zeros(instances.image_size, dtype=np.uint32)
    scores = instances.scores.numpy() if instances.has("scores") else np.zeros(len(instances))
    for row in sorted(range(len(instances)), key=lambda r: (-scores[r], r)):
        full = instances.pred_masks.crops[row].to_array()
        labels[full & (labels == 0)] = row + 1
    return labels


@pytest.mark.parametrize("compression", ["zlib", None])
def test_label_tiff_is_the_dense_label_image_with_the_higher_score_on_top(tmp_path, compression):
    instances = _random_instances(seed=0)
    path = tmp_path / "labels.tif"
    write_label_tiff(path, instances, tile_size=256, compression=compression)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.dtype == np.uint32
        assert not tif.is_bigtiff
        labels = page.asarray()
    assert labels.shape == (1000, 1300)
    np.testing.assert_array_equal(labels, _dense_labels(instances))


def test_every_visible_object_has_its_own_id_and_hidden_ones_none(tmp_path):
    instances = _random_instances(seed=1)
    path = tmp_path / "labels.tif"
    visible = write_label_tiff(path, instances, tile_size=256)
    labels = tifffile.imread(path)
    ids = set(np.unique(labels).tolist()) - {0}
    scores = instances.scores.numpy()
    expected = set()
    for row, crop in enumerate(instances.pred_masks.crops):
        full = crop.to_array()
        above = np.zeros_like(full)
        for other, other_crop in enumerate(instances.pred_masks.crops):
            if (scores[other], -other) > (scores[row], -row):
                above |= other_crop.to_array()
        if (full & ~above).any():
            expected.add(row + 1)
    n = len(instances)
    assert n - 1 not in ids  # the 10 x 10 square under the higher-scoring 200 x 200 one
    assert n not in ids  # the empty mask
    assert ids == expected and visible == len(expected)


def test_pyramid_levels_are_the_full_resolution_labels_sampled_every_2_to_the_k(tmp_path):
    instances = _random_instances(seed=2)
    path = tmp_path / "pyramid.tif"
    write_label_tiff(path, instances, tile_size=128, pyramid_levels=3)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
        full = tif.pages[0].asarray()
        levels = tif.pages[0].pages
        assert len(levels) == 3
        for k, level in enumerate(levels, start=1):
            assert level.subfiletype == 1 and level.is_tiled and level.dtype == np.uint32
            assert level.shape == (-(-1000 // 2**k), -(-1300 // 2**k))
            np.testing.assert_array_equal(level.asarray(), full[:: 2**k, :: 2**k])
        assert [lvl.shape for lvl in tif.series[0].levels] == [full.shape] + [lvl.shape for lvl in levels]


def test_ids_above_65535_are_kept(tmp_path):
    image_size = (300, 400)
    n = 70_001
    crops = [MaskCrop.empty(image_size)] * n
    crops[65_534] = MaskCrop(np.ones((5, 5), dtype=bool), 10, 10, image_size)
    crops[69_999] = MaskCrop(np.ones((3, 4), dtype=bool), 390, 290, image_size)
    crops[70_000] = MaskCrop(np.ones((2, 2), dtype=bool), 200, 100, image_size)
    path = tmp_path / "many.tif"
    assert write_label_tiff(path, _instances(crops, image_size, None), tile_size=256) == 3
    labels = tifffile.imread(path)
    assert labels.dtype == np.uint32
    assert set(np.unique(labels).tolist()) == {0, 65_535, 70_000, 70_001}
    assert (labels[290:300, 390:400] == 70_000).sum() == 12


def test_a_40000_px_square_image_is_written_without_a_full_image_array(tmp_path):
    image_size = (40_000, 40_000)
    square = np.ones((30, 40), dtype=bool)
    crops = [MaskCrop(square, 9_000 * i + 1_000, 7_000 * i + 1_010, image_size) for i in range(5)]
    path = tmp_path / "huge.tif"
    tile = 1024
    tracemalloc.start()
    try:
        write_label_tiff(path, _instances(crops, image_size, None), tile_size=tile, pyramid_levels=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # the (40000, 40000) uint32 image would be 6.4 GB
    assert path.stat().st_size < 16 * 2**20
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.shape == image_size
        # Decode the one tile holding object 2 (rows 15010.., columns 19000..) by hand.
        index = (15_010 // tile) * -(-40_000 // tile) + 19_000 // tile
        tif.filehandle.seek(page.dataoffsets[index])
        data = tif.filehandle.read(page.databytecounts[index])
    decoded = np.frombuffer(zlib.decompress(data), dtype="<u4").reshape(tile, tile)
    top, left = 15_010 % tile, 19_000 % tile
    assert (decoded[top : top + 30, left : left + 40] == 3).all()
    assert (decoded != 0).sum() == 30 * 40


def test_dense_masks_and_bad_tile_sizes_are_refused(tmp_path):
    image_size = (64, 64)
    dense = Instances(image_size, pred_masks=BitMasks(torch.zeros(1, 64, 64, dtype=torch.bool)))
    with pytest.raises(TypeError, match="CroppedBitMasks"):
        write_label_tiff(tmp_path / "dense.tif", dense)
    cropped = _instances([MaskCrop(np.ones((2, 2), dtype=bool), 0, 0, image_size)], image_size, None)
    with pytest.raises(ValueError, match="multiple of 16"):
        write_label_tiff(tmp_path / "tile.tif", cropped, tile_size=100)
