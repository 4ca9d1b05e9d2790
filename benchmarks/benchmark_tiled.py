"""Tiled inference as the image grows: tiles per second and peak memory of ``TiledPredictor`` on
square images of cell pictures (2000, 8000 and 20000 pixels by default), each predicted in a
fresh process so that its peak resident memory (``VmHWM`` on Linux) is its own. The memory
should stay flat in the image area: tiles are read one at a time and masks stay crops, so what
grows is the objects found, not the pixels. The JSON reports both.

    python -m benchmarks.benchmark_tiled [--sizes 2000 8000 20000] [--threads 1] [--work-dir DIR]
        [--score-threshold S] [--detections-per-tile N] [--quick] [KEY=VALUE ...]

    # a trained model instead of the calibrated demo weights:
    python -m benchmarks.benchmark_tiled --config-file RUN/config.yaml --weights RUN/model_final.pth

The images are tiled, zlib-compressed RGB TIFFs written tile by tile (the largest never lies in
memory), made of 256 x 256 crops of the DSB2018 val images at their own scale: an 8 x 8 block of
64 distinct crops (2048 pixels square) repeats over the image, each repetition shuffled and each
crop rotated or flipped, so every block holds the same nuclei and every image size the same
density of them. They are cached in the work folder (``--work-dir``, default
``$TMPDIR/benchmark_tiled``) and reused.

The model is the config's (by default the ResNet-18-FPN demo model, tiles of 512 pixels with an
overlap of 128) on the CPU. Without ``--weights`` its weights are calibrated on crops of the same
pictures (``benchmarks.calibration``, seed 0; no trained demo model is shipped), written once into
the work folder: realistic activations and detections, but not a trained model's detections.
Positional ``KEY=VALUE`` arguments are config overrides (Hydra, as for train_net.py) when no
``--config-file`` is given. Prints one JSON object: the settings, one entry per size (tiles,
seconds, tiles/s over the model calls and over the whole call, memory before and at the peak,
detections, objects and the bytes of their masks, the merge report) and the acceptance figures
(peak memory of the 20000 image against 3000 MB, tiles/s of the largest image over the smallest's).
The smallest size runs again after the others, and the ratio takes the mean of its two runs: the
speed of a shared machine drifts over the hour the 20000 image takes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tifffile
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from benchmarks.common import data_root, peak_rss_mb
from project.config import load_cfg
from project.engine.cli import (
    USER_ERRORS,
    ArgumentParser,
    CommandLineError,
    load_config,
    non_negative_int,
    positive_int,
    run_command,
    split_overrides,
)
from project.engine.tiled_predictor import TiledPredictor
from project.tiling.readers import ArrayLargeImage, open_large_image
from project.utils.memory import resident_bytes

PROG = "python -m benchmarks.benchmark_tiled"
PATCH = 256  # side of one crop of a DSB2018 picture
BLOCK = 8  # crops per side of the repeating block
TIFF_TILE = 512  # TIFF tile side, a multiple of PATCH
RSS_TARGET_MB = 3000
RATIO_TOLERANCE = 0.10
IMAGE_VERSION = 1  # bump when the drawing changes, so cached images are redrawn


# --- the cell images -------------------------------------------------------------------------


def source_patches(count: int = BLOCK * BLOCK) -> List[np.ndarray]:
    """``count`` RGB crops, ``PATCH`` pixels square, from the centres of the DSB2018 val images
    (sorted by name), at the images' own scale."""
    folder = data_root() / "dsb2018" / "val"
    paths = sorted(folder.glob("*.png"))
    if len(paths) < count:
        raise CommandLineError(
            f"found {len(paths)} DSB2018 val images in {folder}, need {count}; set PROJECT_DATA_ROOT to the "
            "shared data folder (the one holding dsb2018/val/*.png)"
        )
    patches = []
    for path in paths[:count]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CommandLineError(f"{path}: OpenCV cannot read it; is the DSB2018 copy complete?")
        height, width = image.shape[:2]
        if min(height, width) < PATCH:
            image = cv2.resize(image, (max(width, PATCH), max(height, PATCH)), interpolation=cv2.INTER_LINEAR)
            height, width = image.shape[:2]
        y0, x0 = (height - PATCH) // 2, (width - PATCH) // 2
        patches.append(np.ascontiguousarray(image[y0 : y0 + PATCH, x0 : x0 + PATCH, ::-1]))
    return patches


class CellMosaic:
    """An endless plane of the ``patches`` (``BLOCK * BLOCK`` of them): every ``BLOCK x BLOCK``
    block of crops holds each patch once, in an order and an orientation (one of the 8 rotations
    and flips) drawn from ``(seed, block row, block column)``."""

    def __init__(self, patches: Sequence[np.ndarray], seed: int = 0):
        if len(patches) != BLOCK * BLOCK:
            raise ValueError(f"a block takes {BLOCK * BLOCK} patches, got {len(patches)}")
        self.patches = list(patches)
        self.seed = seed
        self._layouts: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def _layout(self, block_row: int, block_col: int) -> Tuple[np.ndarray, np.ndarray]:
        key = (block_row, block_col)
        if key not in self._layouts:
            rng = np.random.default_rng([self.seed, block_row, block_col])
            self._layouts[key] = (rng.permutation(len(self.patches)), rng.integers(0, 8, len(self.patches)))
        return self._layouts[key]

    def patch(self, row: int, col: int) -> np.ndarray:
        """The crop at patch row ``row``, column ``col`` of the plane."""
        order, turns = self._layout(row // BLOCK, col // BLOCK)
        slot = (row % BLOCK) * BLOCK + col % BLOCK
        picture = np.rot90(self.patches[order[slot]], k=int(turns[slot]) % 4)
        return picture[:, ::-1] if turns[slot] >= 4 else picture

    def region(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Pixels ``[y, y + height) x [x, x + width)`` of the plane, (height, width, 3) RGB."""
        out = np.empty((height, width, 3), dtype=np.uint8)
        for row in range(y // PATCH, (y + height - 1) // PATCH + 1):
            for col in range(x // PATCH, (x + width - 1) // PATCH + 1):
                top, left = row * PATCH, col * PATCH
                y0, y1 = max(top, y), min(top + PATCH, y + height)
                x0, x1 = max(left, x), min(left + PATCH, x + width)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = self.patch(row, col)[y0 - top : y1 - top, x0 - left : x1 - left]
        return out


def _tiff_tiles(mosaic: CellMosaic, size: int, bar) -> Iterator[np.ndarray]:
    """The ``TIFF_TILE`` tiles of a ``size`` square image in the order TIFF stores them (row by
    row); the parts of edge tiles beyond the image are black."""
    for y in range(0, size, TIFF_TILE):
        for x in range(0, size, TIFF_TILE):
            tile = mosaic.region(x, y, TIFF_TILE, TIFF_TILE)
            tile[size - y :] = 0
            tile[:, size - x :] = 0
            bar.update(1)
            yield tile


def cells_tiff(work_dir: Path, size: int, mosaic: CellMosaic) -> Path:
    """The cached ``size`` x ``size`` cell image in ``work_dir``, drawn and written tile by tile
    (tifffile, zlib, ``TIFF_TILE`` tiles) when it is not there yet."""
    path = work_dir / f"cells_{size}_seed{mosaic.seed}_v{IMAGE_VERSION}.tif"
    if path.exists():
        return path
    partial = path.with_suffix(".tif.partial")
    per_side = math.ceil(size / TIFF_TILE)
    with tqdm(total=per_side**2, unit="tile", desc=f"writing {path.name}", file=sys.stderr) as bar:
        tifffile.imwrite(
            partial,
            _tiff_tiles(mosaic, size, bar),
            shape=(size, size, 3),
            dtype=np.uint8,
            tile=(TIFF_TILE, TIFF_TILE),
            photometric="rgb",
            compression="zlib",
            bigtiff=size * size * 3 > 2**31,
        )
    partial.replace(path)
    return path


# --- the model -------------------------------------------------------------------------------


def build_config(config_file: Optional[str], overrides: Sequence[str], weights: Optional[str], args) -> Any:
    """The model config: a saved ``config.yaml`` or the configs/ tree with ``overrides``, on the
    CPU unless ``--device`` says otherwise, with the benchmark's test options applied."""
    if config_file:
        if overrides:
            raise CommandLineError(
                f"config overrides {list(overrides)} are for the configs/ tree; edit {config_file} instead"
            )
        cfg = load_cfg(config_file)
    else:
        cfg = load_config(overrides)
    cfg.MODEL.DEVICE = args.device
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    if args.score_threshold is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.score_threshold
    if args.detections_per_tile is not None:
        cfg.TEST.DETECTIONS_PER_IMAGE = args.detections_per_tile
    return cfg


def calibrated_weights(work_dir: Path, cfg: Any, mosaic: CellMosaic, seed: int) -> Path:
    """Weights for ``cfg``'s model calibrated on four 512-pixel regions of the cell plane (written
    once into ``work_dir``, keyed by the model's config and the seed)."""
    model = OmegaConf.to_container(cfg.MODEL)
    for varies in ("WEIGHTS", "DEVICE"):
        model.pop(varies)
    key = hashlib.sha1(json.dumps([model, cfg.INPUT.FORMAT], sort_keys=True).encode()).hexdigest()[:10]
    path = work_dir / f"calibrated_R{cfg.MODEL.RESNETS.DEPTH}_{key}_seed{seed}_v{IMAGE_VERSION}.pkl"
    if path.exists():
        return path
    print(f"calibrating the model's weights on the cell pictures into {path}", file=sys.stderr)
    side = 512
    regions = [mosaic.region(x, y, side, side) for y, x in ((0, 0), (0, side), (side, 0), (side, side))]
    if cfg.INPUT.FORMAT == "BGR":
        regions = [r[:, :, ::-1] for r in regions]
    images = [torch.from_numpy(np.ascontiguousarray(r.transpose(2, 0, 1))) for r in regions]
    partial = path.with_suffix(".pkl.partial")
    write_calibrated_detectron2_checkpoint(cfg, images, partial, seed=seed)
    partial.replace(path)
    return path


# --- one size, in its own process ------------------------------------------------------------


def process_peak_rss_mb() -> float:
    """Peak resident memory of this process image, in MiB: ``VmHWM`` of /proc/self/status on
    Linux, where ``ru_maxrss`` would not do, since a child started by ``subprocess`` keeps the
    parent's resident memory at the spawn as its ``ru_maxrss`` after ``exec``; elsewhere
    ``ru_maxrss`` (start the benchmark from a small parent there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak_rss_mb()


class RssSampler:
    """Samples this process's resident memory every ``period`` seconds, in a thread, while the
    ``with`` block runs; ``timeline`` gives it at each tenth of the block's duration."""

    def __init__(self, period: float = 0.5):
        self.period = period
        self.samples: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            rss = resident_bytes()
            if rss is not None:
                self.samples.append(rss / 2**20)
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self) -> List[float]:
        if not self.samples:
            return []
        last = len(self.samples) - 1
        return [round(self.samples[round(last * k / 10)], 1) for k in range(11)]


def warm_up(predictor, image) -> None:
    """One untimed call on the image's top-left corner, wide enough for one full batch of tiles,
    so the first timed batch pays no one-off costs and allocations of a batch's size are made."""
    grid = predictor.grid((image.height, image.width))
    stride = grid.tile - grid.overlap
    width = min(image.width, grid.tile + (predictor.batch_size - 1) * stride)
    height = min(image.height, grid.tile)
    predictor(ArrayLargeImage(image.read_region(0, 0, width, height), channel_order="RGB"))


def measure_one(image_path: Path, args, overrides: Sequence[str]) -> Dict[str, Any]:
    """Predict ``image_path`` tile by tile in this process; the timings, this process's memory
    before and at its peak, and what was found."""
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    cfg = build_config(args.config_file, overrides, args.weights, args)
    predictor = TiledPredictor(
        cfg, tile_size=args.tile_size, overlap=args.overlap, scale=args.scale, batch_size=args.batch_size
    )
    with open_large_image(str(image_path)) as image:
        warm_up(predictor, image)
        rss_before = process_peak_rss_mb()
        with RssSampler() as sampler:
            output = predictor(image, progress=True)
    instances = output["instances"]
    seconds = predictor.last_seconds
    tiles = int(seconds["tiles"])
    report = predictor.last_report.as_dict()
    mask_bytes = sum(crop.mask.nbytes for crop in instances.pred_masks.crops)
    height, width = instances.image_size
    peak = process_peak_rss_mb()
    return {
        "size": int(width),
        "image_file_mb": round(image_path.stat().st_size / 2**20, 1),
        "tiles": tiles,
        "tile_grid": list(predictor.grid((height, width)).shape),
        "seconds": {
            "total": round(seconds["total"], 2),
            "model": round(seconds["model"], 2),
            "merge": round(seconds["merge"], 2),
            "reading_and_rest": round(seconds["total"] - seconds["model"] - seconds["merge"], 2),
        },
        "tiles_per_s": {
            "model": round(tiles / seconds["model"], 3),
            "overall": round(tiles / seconds["total"], 3),
        },
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_growth_mb": round(peak - rss_before, 1),
        "rss_timeline_mb": sampler.timeline(),
        "detections": report["detections"],
        "detections_per_tile": round(report["detections"] / tiles, 1),
        "objects": len(instances),
        "objects_per_megapixel": round(len(instances) / (height * width / 1e6), 1),
        "object_mask_mb": round(mask_bytes / 2**20, 1),
        "merge": report,
    }


def child_command(image_path: Path, args, weights: Optional[str], overrides: Sequence[str]) -> List[str]:
    command = [sys.executable, "-m", "benchmarks.benchmark_tiled", "--one", str(image_path)]
    command += ["--threads", str(args.threads), "--device", args.device]
    for option in (
        "config_file",
        "score_threshold",
        "detections_per_tile",
        "tile_size",
        "overlap",
        "scale",
        "batch_size",
    ):
        value = getattr(args, option)
        if value is not None:
            command += ["--" + option.replace("_", "-"), str(value)]
    if weights is not None:
        command += ["--weights", weights]
    return command + list(overrides)


def run_child(image_path: Path, args, weights: Optional[str], overrides: Sequence[str], size: int) -> Dict[str, Any]:
    """``measure_one`` in a fresh Python process (its progress bar on this stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    done = subprocess.run(
        child_command(image_path, args, weights, overrides), stdout=subprocess.PIPE, text=True, env=env
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"size": size, "failed": f"exit status {done.returncode} (its error is above, on stderr)"}
    return json.loads(lines[-1])


# --- the report ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def acceptance(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Peak memory of the 20000 image (the issue's size) against the target, and the tiles/s of
    the largest image over the smallest's (the mean of the smallest's runs, before and after)."""
    ok = [r for r in results if "failed" not in r]
    if not ok:
        return {}
    smallest = min(r["size"] for r in ok)
    largest = max(ok, key=lambda r: r["size"])
    small_runs = [r["tiles_per_s"] for r in ok if r["size"] == smallest]
    ratios = {
        key: largest["tiles_per_s"][key] / (sum(t[key] for t in small_runs) / len(small_runs))
        for key in ("overall", "model")
    }
    rss_20k = next((r["peak_rss_mb"] for r in ok if r["size"] == 20000), None)
    return {
        "rss_20k_mb": rss_20k,
        "rss_target_mb": RSS_TARGET_MB,
        "rss_20k_under_target": None if rss_20k is None else rss_20k < RSS_TARGET_MB,
        "largest_size": largest["size"],
        "peak_rss_largest_mb": largest["peak_rss_mb"],
        "smallest_size": smallest,
        "tiles_per_s_smallest_runs": [t["overall"] for t in small_runs],
        "tiles_per_s_ratio_largest_vs_smallest": round(ratios["overall"], 3),
        "tiles_per_s_ratio_largest_vs_smallest_model_only": round(ratios["model"], 3),
        "tiles_per_s_within_10_percent": abs(ratios["overall"] - 1) <= RATIO_TOLERANCE,
    }


def settings(args, cfg: Any, weights: str, calibrated: bool) -> Dict[str, Any]:
    tile_size = args.tile_size or cfg.TEST.TILE.SIZE or cfg.INPUT.MIN_SIZE_TEST or cfg.INPUT.MAX_SIZE_TEST
    return {
        "tile_size": int(tile_size),
        "overlap": int(args.overlap if args.overlap is not None else cfg.TEST.TILE.OVERLAP),
        "scale": float(args.scale if args.scale is not None else cfg.TEST.TILE.SCALE),
        "batch_size": int(args.batch_size or cfg.TEST.TILE.BATCH_SIZE),
        "threads": args.threads,
        "device": args.device,
        "model": f"R{cfg.MODEL.RESNETS.DEPTH}-FPN Mask R-CNN, {cfg.MODEL.ROI_HEADS.NUM_CLASSES} class(es)",
        "weights": weights,
        "weights_calibrated": calibrated,
        "score_threshold": float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST),
        "detections_per_tile": int(cfg.TEST.DETECTIONS_PER_IMAGE),
        "image": f"{PATCH}-px crops of {BLOCK * BLOCK} DSB2018 val images, {BLOCK}x{BLOCK} block repeated "
        "(shuffled, rotated/flipped), tiled zlib RGB TIFF",
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "peak_rss_from": "VmHWM" if Path("/proc/self/status").exists() else "ru_maxrss",
        "runs": "each size in its own process; the smallest size again last",
    }


# --- command line ----------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=positive_int, nargs="+", default=[2000, 8000, 20000], help="image sides, in pixels"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: --sizes 600 1000 (4 and 9 tiles)")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch and OpenCV threads of each run (default 1)"
    )
    parser.add_argument("--device", default="cpu", help="model device (default cpu; peak RSS is host memory)")
    parser.add_argument(
        "--work-dir", type=Path, help="folder for the images and weights (default $TMPDIR/benchmark_tiled)"
    )
    parser.add_argument("--config-file", help="a saved config.yaml (as train_net.py writes) instead of configs/")
    parser.add_argument("--weights", help="model weights (default: the demo model calibrated on the cells, seed 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibrated weights and of the layout")
    parser.add_argument("--score-threshold", type=float, help="MODEL.ROI_HEADS.SCORE_THRESH_TEST (default: config's)")
    parser.add_argument(
        "--detections-per-tile", type=positive_int, help="TEST.DETECTIONS_PER_IMAGE (default: config's)"
    )
    parser.add_argument("--tile-size", type=positive_int, help="tile side in model pixels (default: TEST.TILE.SIZE)")
    parser.add_argument(
        "--overlap", type=non_negative_int, help="tile overlap in model pixels (default: TEST.TILE.OVERLAP)"
    )
    parser.add_argument("--scale", type=float, help="resize factor (default: TEST.TILE.SCALE)")
    parser.add_argument("--batch-size", type=positive_int, help="tiles per model call (default: TEST.TILE.BATCH_SIZE)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    return parser


def check_args(parser: ArgumentParser, args) -> None:
    if args.quick:
        args.sizes = [600, 1000]
    if args.weights and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: no such file")
    if args.config_file and not Path(args.config_file).is_file():
        parser.error(f"--config-file {args.config_file}: no such file")


def run(args, overrides: Sequence[str]) -> Dict[str, Any]:
    work_dir = args.work_dir or Path(tempfile.gettempdir()) / "benchmark_tiled"
    work_dir.mkdir(parents=True, exist_ok=True)
    mosaic = CellMosaic(source_patches(), seed=args.seed)
    cfg = build_config(args.config_file, overrides, args.weights, args)
    weights = args.weights
    if weights is None:
        weights = str(calibrated_weights(work_dir, cfg, mosaic, args.seed))
        cfg.MODEL.WEIGHTS = weights
    # The smallest size again at the end: the machine's speed drifts over a long run, and the
    # ratio of the largest to the smallest is taken against both.
    order = list(args.sizes) + ([min(args.sizes)] if len(set(args.sizes)) > 1 else [])
    results = []
    for size in order:
        start = time.perf_counter()
        path = cells_tiff(work_dir, size, mosaic)
        print(f"{path.name}: ready in {time.perf_counter() - start:.1f} s; predicting", file=sys.stderr)
        results.append(run_child(path, args, weights, overrides, size))
    failed = sum("failed" in r for r in results)
    print(f"{len(results) - failed} runs measured, {failed} failed", file=sys.stderr)
    return {
        "settings": settings(args, cfg, weights, calibrated=args.weights is None),
        "results": results,
        "acceptance": acceptance(results),
    }


def benchmark(argv: Sequence[str]) -> None:
    parser = build_parser()
    args, overrides = split_overrides(parser, argv)
    check_args(parser, args)
    if args.one:
        print(json.dumps(measure_one(args.one, args, overrides)))
        return
    report = run(args, overrides)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    failed = sum("failed" in r for r in report["results"])
    if failed:
        raise CommandLineError(f"{failed} of {len(report['results'])} runs failed; their errors are above")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(benchmark, sys.argv[1:] if argv is None else list(argv), PROG, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
