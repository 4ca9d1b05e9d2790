"""Run a model on images, folders, a video or a webcam and draw what it finds (python demo.py,
or python -m project.demo).

    python demo.py --input cells/ --output out/ MODEL.WEIGHTS=output/model_final.pth
    python demo.py --input street.mp4 --output out/street.mp4 --config-file output/config.yaml \\
        MODEL.WEIGHTS=output/model_final.pth --confidence-threshold 0.7
    python demo.py --webcam --output webcam.mp4 +experiment=finetune_road MODEL.WEIGHTS=model.pth
    python demo.py --input 'plates/**/*.tif' --output out/ --save-instances --classes nucleus ...
    python demo.py --tile --input slides/ --output out/ --tile-size 512 MODEL.WEIGHTS=model.pth

Trailing arguments are config overrides, as for train_net.py (``+experiment=...``, ``KEY=VALUE``);
with ``--config-file`` (a ``config.yaml`` saved by a training run) they apply on top of that file.
Without ``--output`` results are shown in a window (q or Esc stops). ``--tile`` is for images
larger than the model input, such as whole-slide scans (see "tiled inference" above).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import cv2
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..checkpoint import CheckpointDownloadError, CheckpointFormatError, CheckpointMismatchError, UnsafeCheckpointError
from ..config import load_cfg
from ..data import DatasetCatalog, MetadataCatalog, register_datasets_from_config
from ..engine import cli
from ..engine.predictor import DefaultPredictor
from ..structures import Instances
from ..tiling.readers import LargeImageError
from ..utils.memory import map_large_blocks_separately
from ..visualization import ColorMode, Visualizer
from ..visualization.video import VideoVisualizer
from .pipeline import Timings, run_pipeline
from .sources import DemoInputError, Frame, ImageFiles, VideoFrames, is_video
from .writers import VIDEO_CODECS, InstanceWriter, VideoWriter, write_image

logger = logging.getLogger("project.demo")

# Errors caused by the user's input: reported in one paragraph, exit status 1, no traceback
# (the shared ones, DemoInputError among them as a CommandLineError, and these).
USER_ERRORS = cli.USER_ERRORS + (
    OSError,
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    LargeImageError,
)

PROG = "demo.py"
COLOR_MODES = {"instance": ColorMode.IMAGE, "class": ColorMode.SEGMENTATION, "grey": ColorMode.IMAGE_BW}
# With --tile, images up to this size are drawn at full resolution, read whole (64 MP: 192 MB as
# 8-bit RGB); larger ones are drawn reduced by a whole factor to at most this size.
TILED_PICTURE_MAX_PIXELS = 64_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input (one of)")
    source.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        help="image files, glob patterns, folders (searched recursively) or one video file",
    )
    source.add_argument("--video-input", metavar="FILE", help="a video file (same as --input FILE)")
    source.add_argument(
        "--webcam", nargs="?", const=0, type=int, metavar="INDEX", help="a webcam (device index, default 0)"
    )
    parser.add_argument(
        "--output", metavar="PATH", help="folder for annotated images; for video, an .mp4 file or a folder"
    )
    parser.add_argument(
        "--config-file", metavar="YAML", help="a config.yaml saved by a training run (default: the configs/ tree)"
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score shown (default 0.5)")
    parser.add_argument(
        "--classes", nargs="+", metavar="NAME_OR_ID", help="keep only these classes (names or model class ids)"
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        help="at most this many objects per image, with --tile per tile (default: TEST.DETECTIONS_PER_IMAGE)",
    )
    parser.add_argument(
        "--max-frames", type=int, help="stop after this many frames or images (a quick look at a long video)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="frames per model call (default 4 for video files, 1 otherwise); with --tile, tiles per call "
        "(default TEST.TILE.BATCH_SIZE)",
    )
    parser.add_argument(
        "--save-instances",
        action="store_true",
        help="also write per-object cut-outs and masks, a uint16 label PNG and COCO results JSON per image",
    )
    parser.add_argument(
        "--color-mode",
        choices=sorted(COLOR_MODES),
        default="instance",
        help="colour per instance, per class, or instances on a grey image",
    )
    parser.add_argument("--mask-only", action="store_true", help="draw the masks alone, in colour on black")
    parser.add_argument(
        "--codec", choices=VIDEO_CODECS, default="mp4v", help="video codec: mp4v (OpenCV, default) or h264 (needs PyAV)"
    )
    parser.add_argument("--timings-json", metavar="FILE", help="write the run's per-stage timings as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_tile_options(parser)
    return parser


def _add_tile_options(parser: argparse.ArgumentParser) -> None:
    tiled = parser.add_argument_group(
        "tiled inference (large images)",
        "--tile runs the model over each input image tile by tile, reading only the tiles it needs\n"
        "(whole-slide scans, big TIFFs; images only, not video), and writes into the --output folder,\n"
        "per image: <stem>.json (COCO results), <stem>_labels.tif (uint32 instance ids, for QuPath or\n"
        "napari), <stem>.geojson (for QuPath or QGIS) and a picture <stem>.jpg, reduced to at most\n"
        f"{TILED_PICTURE_MAX_PIXELS / 1e6:.0f} megapixels for a larger image.",
    )
    tiled.add_argument("--tile", action="store_true", help="run each input image tile by tile (see above)")
    tiled.add_argument(
        "--tile-size",
        type=cli.positive_int,
        metavar="PX",
        help="tile side in model-input pixels (TEST.TILE.SIZE, else the test size)",
    )
    tiled.add_argument(
        "--tile-overlap", type=cli.non_negative_int, metavar="PX", help="overlap of tiles (TEST.TILE.OVERLAP)"
    )
    tiled.add_argument(
        "--tile-scale", type=cli.positive_float, metavar="FACTOR", help="resize factor before tiling (TEST.TILE.SCALE)"
    )
    tiled.add_argument(
        "--pyramid-levels",
        type=cli.non_negative_int,
        metavar="N",
        help="coarser levels in the label TIFF (default: as many as the input image has)",
    )


def load_config(config_file: Optional[str], overrides: Sequence[str]) -> DictConfig:
    """The config: ``config_file`` (a saved config.yaml) with ``KEY=VALUE`` overrides merged on
    top, or the configs/ tree composed with Hydra ``overrides`` (``project.engine.cli.load_config``)."""
    if config_file is None:
        return cli.load_config(overrides)
    if not os.path.isfile(config_file):
        raise DemoInputError(f"--config-file {config_file}: no such file")
    cfg = load_cfg(config_file)
    if overrides:
        if any(not o or o[0] in "+~" or "=" not in o for o in overrides):
            raise DemoInputError(f"with --config-file only KEY=VALUE overrides apply, got {' '.join(overrides)}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return cfg


def class_names_of(cfg: DictConfig) -> Optional[List[str]]:
    """``thing_classes`` of the config's test (or training) dataset, when it can tell."""
    try:
        register_datasets_from_config(cfg)
    except (ValueError, TypeError) as error:
        logger.warning("class names unknown: %s", error)
        return None
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes")
        if names is None and name in DatasetCatalog:
            try:
                DatasetCatalog.get(name)  # loading a COCO-format set records its class names
            except Exception as error:  # names are a nicety; the demo runs without them
                logger.warning("class names of '%s' unknown: %s", name, error)
                continue
            names = MetadataCatalog.get(name).get("thing_classes")
        if names:
            return list(names)
    return None


def class_ids(selection: Optional[Sequence[str]], names: Optional[Sequence[str]], num_classes: int) -> Optional[set]:
    """Model class ids named by ``selection`` (class names or ids); None keeps every class."""
    if not selection:
        return None
    ids = set()
    for item in selection:
        if item.isdigit() and int(item) < num_classes:
            ids.add(int(item))
        elif names is not None and item in names:
            ids.add(list(names).index(item))
        else:
            known = ", ".join(names) if names else f"ids 0..{num_classes - 1}"
            raise DemoInputError(f"--classes {item}: not a class of this model ({known})")
    return ids


def select_classes(instances: Instances, keep: Optional[set]) -> Instances:
    """The instances whose class is in ``keep`` (all of them when ``keep`` is None)."""
    if keep is None:
        return instances
    selected = torch.tensor([int(c) in keep for c in instances.pred_classes.tolist()], dtype=torch.bool)
    return instances[selected.to(instances.pred_classes.device)]


def drawing_options(args: argparse.Namespace) -> dict:
    """``Visualizer`` keywords that --color-mode and --mask-only choose."""
    return {"instance_mode": COLOR_MODES[args.color_mode], "mask_only": args.mask_only}


def _source_of(args: argparse.Namespace) -> Union[ImageFiles, VideoFrames]:
    given = [x for x in (args.input, args.video_input, args.webcam) if x is not None]
    if len(given) != 1:
        raise DemoInputError("give exactly one of --input, --video-input and --webcam")
    if args.webcam is not None:
        return VideoFrames(args.webcam)
    if args.video_input is not None:
        return VideoFrames(args.video_input)
    videos = [p for p in args.input if is_video(p)]
    if videos:
        if len(args.input) > 1:
            raise DemoInputError(f"a video ({videos[0]}) must be the only input; run one command per video")
        return VideoFrames(videos[0])
    return ImageFiles(args.input)


def _video_path(output: str, source: VideoFrames, codec: str) -> Path:
    path = Path(output)
    if path.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"):
        return path
    return path / f"{source.name}.mp4"


class DemoRun:
    """Draws and writes each result; ``handle`` is the pipeline's writer stage."""

    def __init__(self, args: argparse.Namespace, source: Union[ImageFiles, VideoFrames], names: Optional[List[str]]):
        self.args, self.source = args, source
        self.metadata = {"thing_classes": names} if names else None
        self.video = isinstance(source, VideoFrames)
        self.visualizer_options = drawing_options(args)
        self.video_visualizer = VideoVisualizer(self.metadata, **self.visualizer_options) if self.video else None
        self.output = Path(args.output) if args.output else None
        self.writer = (
            VideoWriter(_video_path(args.output, source, args.codec), source.fps, args.codec)
            if self.video and self.output
            else None
        )
        instance_folder = None
        if args.save_instances:
            if self.output is None:
                raise DemoInputError("--save-instances needs --output (the folder the files go to)")
            instance_folder = self.output.parent / f"{self.output.stem}_instances" if self.writer else self.output
        self.instances = InstanceWriter(instance_folder, names) if instance_folder else None
        self.window_open = False
        self.stopped = False

    def _draw(self, frame: Frame, instances: Instances) -> Any:
        rgb = frame.image[:, :, ::-1]
        if self.video_visualizer is not None:
            vis = self.video_visualizer.draw_instance_predictions(rgb, instances)
        else:
            vis = Visualizer(rgb, self.metadata, **self.visualizer_options).draw_instance_predictions(instances)
        return vis.get_image()[:, :, ::-1]

    def _image_path(self, frame: Frame) -> Path:
        single_file = self.output.suffix and len(self.source) == 1 and not self.output.is_dir()
        return self.output if single_file else self.output / frame.name

    def _show(self, drawn: Any, title: str) -> None:
        try:
            cv2.imshow("demo", drawn)
            self.window_open = True
            key = cv2.waitKey(1 if self.video else 0) & 0xFF
        except cv2.error:
            raise DemoInputError(
                "cannot open a window here (no display): pass --output to write the results instead"
            ) from None
        if key in (ord("q"), 27):
            self.stopped = True

    def handle(self, frame: Frame, output: Optional[dict]) -> Tuple[float, float]:
        if output is None:
            logger.warning("skipped %s: %s", frame.name, frame.error)
            return 0.0, 0.0
        start = time.perf_counter()
        instances = output["instances"].to("cpu")
        drawn = self._draw(frame, instances)
        drawn_at = time.perf_counter()
        if self.writer is not None:
            self.writer.write(drawn)
        elif self.output is not None:
            write_image(self._image_path(frame), drawn)
        else:
            self._show(drawn, frame.name)
        if self.instances is not None:
            self.instances.write(frame.name, frame.image, instances, frame.index)
        return drawn_at - start, time.perf_counter() - drawn_at

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.window_open:
            cv2.destroyAllWindows()


def _predict_function(predictor: DefaultPredictor, keep: Optional[set]):
    def predict(images: List[Any]) -> List[dict]:
        outputs = predictor(images)
        for output in outputs:
            output["instances"] = select_classes(output["instances"], keep)
        return outputs

    return predict


def skipped_lines(skipped: Sequence[Tuple[str, str]], shown: int = 10) -> List[str]:
    """Summary lines naming the first ``shown`` skipped inputs and why, and how many more."""
    lines = [f"  skipped {name}: {error}" for name, error in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more")
    return lines


def _summary(timings: Timings, run: DemoRun) -> str:
    unit = "frames" if run.video else "images"
    figures = timings.as_dict()
    ms = figures["ms_per_frame"]
    lines = [
        f"demo: {timings.frames} {unit} done, {len(timings.skipped)} skipped (unreadable), "
        f"{figures['frames_per_s']:.2f} {unit}/s; per frame: model {ms['model']:.0f} ms, "
        f"decode {ms['decode']:.0f} ms, draw {ms['draw']:.0f} ms, encode {ms['encode']:.0f} ms "
        f"(model {100 * figures['model_share_of_wall']:.0f}% of wall time)"
    ]
    lines += skipped_lines(timings.skipped)
    if run.writer is not None:
        lines.append(f"  video: {run.writer.path} ({run.writer.frames} frames)")
    elif run.output is not None:
        lines.append(f"  pictures: {run.output}")
    if run.instances is not None:
        lines.append(f"  objects: {run.instances.objects} cut-outs under {run.instances.folder}")
    return "\n".join(lines)


_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.]*(@[\w.]+)?=")


def _is_override(value: str) -> bool:
    """Whether a command-line word is a config override (``KEY=VALUE``, ``+experiment=x``) rather
    than a file (a path that exists is always a file)."""
    return bool(_OVERRIDE.match(value)) and not os.path.exists(value)


def run_demo(argv: Sequence[str], on_frame: Optional[Callable[[Frame], None]] = None) -> Timings:
    """Parse ``argv``, run the demo and return its timings; user errors raise (see ``main``).
    ``on_frame`` is called after each frame is written (for measurements)."""
    args, overrides = cli.split_overrides(build_parser(), argv)
    for option in ("input", "classes"):  # nargs="+" options also swallow overrides written after them
        values = getattr(args, option)
        if values:
            setattr(args, option, [v for v in values if not _is_override(v)])
            overrides = overrides + [v for v in values if _is_override(v)]
    cfg = load_config(args.config_file, overrides)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    if args.max_detections is not None:
        cfg.TEST.DETECTIONS_PER_IMAGE = args.max_detections
    cfg.TEST.PRED_MASK_FORMAT = "crop"  # each mask kept around its object: fast to draw and export
    weights = cfg.MODEL.WEIGHTS.split("?", 1)[0]
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise DemoInputError(f"MODEL.WEIGHTS={cfg.MODEL.WEIGHTS}: no such file")
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model has random weights and its detections mean nothing")
    if args.tile:
        from .tiled import run_tiled  # imported here, not at the top: tiled.py builds on this module

        timings = run_tiled(args, cfg)
    else:
        # The frame loop grew 22% between frames 100 and 600 of a video without this. Not for
        # --tile: TiledPredictor releases memory itself, and a fresh mapping for every feature map
        # made a 20000-px image a third slower (page faults).
        map_large_blocks_separately()
        timings = _run_on_frames(args, cfg, on_frame)
    if args.timings_json:
        Path(args.timings_json).write_text(json.dumps(timings.as_dict(), indent=2))
    return timings


def _run_on_frames(args: argparse.Namespace, cfg: DictConfig, on_frame: Optional[Callable[[Frame], None]]) -> Timings:
    """The demo on images, a video or a webcam, frame by frame through ``run_pipeline``."""
    source = _source_of(args)
    names = class_names_of(cfg)
    keep = class_ids(args.classes, names, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    run = DemoRun(args, source, names)
    predictor = DefaultPredictor(cfg)
    batch_size = args.batch_size or (4 if run.video and isinstance(source.source, str) else 1)
    total = min(len(source), args.max_frames or len(source)) or args.max_frames or None
    with tqdm(total=total, unit="frame" if run.video else "image", disable=args.no_progress, dynamic_ncols=True) as bar:

        def advance(frame: Frame) -> None:
            bar.update(1)
            if on_frame is not None:
                on_frame(frame)
            if run.stopped:
                raise KeyboardInterrupt

        try:
            frames = itertools.islice(source, args.max_frames) if args.max_frames else source
            timings = run_pipeline(frames, _predict_function(predictor, keep), run.handle, batch_size, advance)
        finally:
            run.close()
    print(_summary(timings, run), file=sys.stderr)
    return timings


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    try:
        return cli.run_command(run_demo, sys.argv[1:] if argv is None else argv, PROG, USER_ERRORS)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped", file=sys.stderr)
        return 130
