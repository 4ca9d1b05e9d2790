"""demo.py --tile end to end: a tiled TIFF with bright objects on the tile borders, predicted
tile by tile, gives COCO results, a label TIFF, GeoJSON and a picture that agree with each other
and with the objects drawn.

The model is a registered meta-architecture that reports each 8-connected bright blob of a tile
as one object (as tests/tiling/test_tiled_seams.py does, defined here again because test modules
do not import each other): what the files hold is known exactly."""

from __future__ import annotations

import json
import logging
import re

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import tifffile
from blob_detector import NAME as BLOB_DETECTOR  # registers the stand-in detector

from project.demo import main, run_demo
from project.demo.cli import build_parser
from project.tiling.grid import TileGrid

TILE, OVERLAP = 256, 48
MODEL = ["MODEL.DEVICE=cpu", "MODEL.WEIGHTS=", f"MODEL.META_ARCHITECTURE={BLOB_DETECTOR}"]


def border_scene(height=900, width=1200, seed=0):
    """A dark RGB image with separate bright objects where tiles overlap: discs centred in the
    overlaps (some wider than them, so that both tiles cut them) and a bar longer than a tile;
    and the true masks."""
    rng = np.random.default_rng(seed)
    grid = TileGrid((height, width), TILE, OVERLAP)
    xs = [(start + previous + TILE) // 2 for previous, start in zip(grid.col_starts, grid.col_starts[1:])]
    ys = [(start + previous + TILE) // 2 for previous, start in zip(grid.row_starts, grid.row_starts[1:])]
    bar = np.zeros((height, width), dtype=np.uint8)
    bar[height // 2 - 8 : height // 2 + 8, 60 : width - 60] = 1  # crosses every column of tiles
    shapes = [bar]
    for x, y, r in [(x, y, rng.uniform(10, 70)) for x in xs for y in ys] + [
        (x, rng.uniform(30, height - 30), rng.uniform(5, 60)) for x in xs for _ in range(2)
    ]:
        disc = np.zeros((height, width), dtype=np.uint8)
        cv2.circle(disc, (int(x), int(y)), int(r), 1, -1)
        shapes.append(disc)
    taken = np.zeros((height, width), dtype=bool)
    masks = []
    for shape in shapes:
        grown = cv2.dilate(shape, np.ones((5, 5), np.uint8)).astype(bool)
        if not (grown & taken).any():
            masks.append(shape.astype(bool))
            taken |= grown
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    for i, mask in enumerate(masks):
        image[mask] = (150 + (i * 7) % 100, 200, 160)
    return image, masks


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """``scene.tif`` (tiled 256 x 256, one level) and ``pyramid.tif`` (the same with one
    coarser level as a SubIFD), the image and its true masks."""
    folder = tmp_path_factory.mktemp("tiled_inputs")
    image, masks = border_scene()
    tifffile.imwrite(folder / "scene.tif", image, tile=(TILE, TILE), photometric="rgb")
    with tifffile.TiffWriter(folder / "pyramid.tif") as tif:
        tif.write(image, tile=(TILE, TILE), photometric="rgb", subifds=1)
        tif.write(image[::2, ::2], tile=(TILE, TILE), photometric="rgb", subfiletype=1)
    return folder, image, masks


def _tile_args(*inputs, output):
    return ["--tile", "--tile-size", str(TILE), "--tile-overlap", str(OVERLAP), "--no-progress", "--input", *inputs]


def _run(*inputs, output, extra=()):
    return run_demo([*_tile_args(*map(str, inputs), output=output), "--output", str(output), *extra, *MODEL])


def _main(*inputs, output, extra=()):
    return main([*_tile_args(*map(str, inputs), output=output), "--output", str(output), *extra, *MODEL])


def test_help_describes_the_tiled_mode():
    text = build_parser().format_help()
    assert "tiled inference (large images)" in text and "tile by tile" in text
    assert all(option in text for option in ("--tile-size", "--tile-overlap", "--tile-scale", "--pyramid-levels"))


def test_the_four_outputs_agree_with_each_other_and_with_the_objects(scene, tmp_path, capsys, caplog):
    folder, image, truth = scene
    caplog.set_level(logging.INFO, logger="project.demo")
    timings = _run(folder / "scene.tif", output=tmp_path)
    assert timings.frames == 1 and timings.tiles == len(TileGrid(image.shape[:2], TILE, OVERLAP))
    assert "1 images done, 0 skipped" in capsys.readouterr().err
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("scene.tif: "))
    joined = re.search(r"(\d+) fragments joined into (\d+) objects", line)
    assert joined and int(joined[1]) > 0 and int(joined[2]) > 0, f"the scene must cut objects: {line}"

    results = json.loads((tmp_path / "scene.json").read_text())
    geojson = json.loads((tmp_path / "scene.geojson").read_text())
    labels = tifffile.imread(tmp_path / "scene_labels.tif")
    assert len(results) == len(truth) == len(geojson["features"]) == timings.objects
    assert labels.dtype == np.uint32 and labels.shape == image.shape[:2]
    assert set(np.unique(labels)) == set(range(len(results) + 1))
    assert {feature["properties"]["id"] for feature in geojson["features"]} == set(range(1, len(results) + 1))
    assert {feature["properties"]["classification"]["name"] for feature in geojson["features"]} == {"nucleus"}
    true_ids = np.zeros(labels.shape, dtype=np.int64)
    for i, mask in enumerate(truth):
        true_ids[mask] = i + 1
    matched = set()
    for k, result in enumerate(results):
        mask = mask_util.decode(result["segmentation"]).astype(bool)
        assert np.array_equal(labels == k + 1, mask), f"result {k}: label pixels and RLE mask differ"
        true_id = np.bincount(true_ids[mask]).argmax()
        true_mask = true_ids == true_id
        assert true_id > 0 and (mask & true_mask).sum() / (mask | true_mask).sum() >= 0.95, "found whole"
        matched.add(true_id)
        assert result["file_name"] == "scene.tif" and result["category_id"] == 0
    assert len(matched) == len(truth), "each object once"

    picture = cv2.imread(str(tmp_path / "scene.jpg"))
    assert picture.shape == image.shape
    inside = labels > 0
    assert np.abs(picture[inside].astype(int) - image[inside][:, ::-1]).mean() > 10, "the objects are drawn"


def test_a_pyramidal_input_gives_a_pyramidal_label_tiff(scene, tmp_path):
    folder, image, truth = scene
    _run(folder / "pyramid.tif", output=tmp_path)
    with tifffile.TiffFile(tmp_path / "pyramid_labels.tif") as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
    assert [level.shape for level in levels] == [(900, 1200), (450, 600)]
    assert np.array_equal(levels[1], levels[0][::2, ::2])
    assert len(np.unique(levels[0])) == len(truth) + 1


def test_a_video_with_tile_ends_with_one_message_and_status_1(tmp_path, capsys):
    assert _main(tmp_path / "clip.mp4", output=tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "--tile works on images" in err and "clip.mp4" in err and "Traceback" not in err


def test_an_overlap_as_wide_as_the_tile_is_a_user_error(scene, tmp_path, capsys):
    folder, _, _ = scene
    assert _main(folder / "scene.tif", output=tmp_path, extra=["--tile-overlap", str(TILE)]) == 1
    assert f"tiles of {TILE} pixels cannot overlap by {TILE}" in capsys.readouterr().err


def test_an_unreadable_file_among_two_is_skipped_and_counted(scene, tmp_path, capsys):
    folder, _, _ = scene
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x07" * 40)
    out = tmp_path / "out"
    assert _main(broken, folder / "scene.tif", output=out) == 0
    err = capsys.readouterr().err
    assert "1 images done, 1 skipped" in err and "skipped broken.tif: " in err
    assert sorted(p.name for p in out.iterdir()) == ["scene.geojson", "scene.jpg", "scene.json", "scene_labels.tif"]


def test_the_only_input_unreadable_ends_with_its_message_and_status_1(tmp_path, capsys):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x07" * 40)
    assert _main(broken, output=tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "demo.py: error: " in err and "broken.tif: not a readable TIFF file" in err and "Traceback" not in err


def test_an_image_too_large_to_draw_whole_is_drawn_reduced_with_its_objects_in_place(
    scene, tmp_path, capsys, monkeypatch
):
    folder, image, _ = scene
    monkeypatch.setattr("project.demo.tiled.TILED_PICTURE_MAX_PIXELS", 500_000)  # the scene has 1.08 million
    timings = _run(folder / "scene.tif", output=tmp_path)
    assert timings.as_dict()["reduced_pictures"] == 1
    err = capsys.readouterr().err
    assert "picture of scene.tif reduced 2 times on each side (at most 0.5 megapixels are drawn), masks without" in err

    picture = cv2.imread(str(tmp_path / "scene.jpg"))
    assert picture.shape == (450, 600, 3)
    reduced = cv2.resize(image, (600, 450), interpolation=cv2.INTER_AREA)[:, :, ::-1]  # block means, as BGR
    labels = tifffile.imread(tmp_path / "scene_labels.tif")
    kernel = np.ones((9, 9), np.uint8)
    inside = cv2.erode((labels > 0).astype(np.uint8), kernel)[::2, ::2].astype(bool)
    outside = ~cv2.dilate((labels > 0).astype(np.uint8), kernel)[::2, ::2].astype(bool)  # no boxes or labels
    assert inside.sum() > 1000 and outside.sum() > 10_000
    difference = np.abs(picture.astype(int) - reduced).mean(axis=2)
    assert difference[inside].mean() > 10, "the masks are drawn over the objects"
    assert difference[outside].mean() < 1, (
        "away from the objects the picture is the reduced image, without boxes or labels"
    )
