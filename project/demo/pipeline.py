"""The demo's three-stage pipeline: a reader thread decodes frames, the calling thread runs the
model on batches, a writer thread draws and encodes. Bounded queues keep memory flat on long
videos; decoding, drawing and encoding overlap with inference, so the model sets the pace."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Tuple

from .sources import Frame

_END = object()


@dataclass
class Timings:
    """Seconds spent per stage over a run (stages overlap, so they may add up to more than
    ``wall``), and frame counts."""

    decode: float = 0.0
    model: float = 0.0
    draw: float = 0.0
    encode: float = 0.0
    wall: float = 0.0
    frames: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        per_frame = {k: getattr(self, k) / max(1, self.frames) * 1000 for k in ("decode", "model", "draw", "encode")}
        return {
            "frames": self.frames,
            "skipped": len(self.skipped),
            "wall_s": self.wall,
            "frames_per_s": self.frames / self.wall if self.wall > 0 else 0.0,
            "ms_per_frame": {**per_frame, "wall": self.wall / max(1, self.frames) * 1000},
            "model_share_of_wall": self.model / self.wall if self.wall > 0 else 0.0,
        }


class _Stage(threading.Thread):
    """A daemon thread that remembers the exception that ended it and then sets ``stop``, so
    the other stages stop waiting for it."""

    def __init__(self, target: Callable[[], None], name: str, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_all = stop
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # handed to the main thread, which re-raises it
            self.error = e
            self._stop_all.set()


def run_pipeline(
    frames: Iterable[Frame],
    predict: Callable[[List[Any]], List[Any]],
    handle: Callable[[Frame, Any], Tuple[float, float]],
    batch_size: int = 1,
    on_frame: Optional[Callable[[Frame], None]] = None,
) -> Timings:
    """Run ``predict`` (a list of BGR images -> one output each) over ``frames`` in batches of
    up to ``batch_size``, and ``handle(frame, output)`` on each result in order, which returns
    its (draw, encode) seconds. Frames with an ``error`` skip the model, are counted in
    ``Timings.skipped`` and still reach ``handle`` (with output None) so nothing is dropped
    unseen. ``on_frame`` is called after each frame is handled (progress bars). Re-raises the
    first exception of any stage."""
    timings = Timings()
    decoded: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size)
    results: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size)
    stop = threading.Event()

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue[Any]) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def read() -> None:
        iterator = iter(frames)
        try:
            while True:
                start = time.perf_counter()
                frame = next(iterator, None)
                timings.decode += time.perf_counter() - start
                if frame is None or not put(decoded, frame):
                    return
        finally:
            put(decoded, _END)

    def write() -> None:
        while True:
            item = get(results)
            if item is _END:
                return
            frame, output = item
            draw, encode = handle(frame, output)
            timings.draw += draw
            timings.encode += encode
            if frame.error is None:
                timings.frames += 1
            if on_frame is not None:
                on_frame(frame)

    reader, writer = _Stage(read, "demo-reader", stop), _Stage(write, "demo-writer", stop)
    start = time.perf_counter()
    reader.start()
    writer.start()
    try:
        finished = False
        while not finished:
            batch: List[Frame] = []  # frames in order, unreadable ones included
            readable = 0
            while readable < batch_size:
                item = get(decoded)
                if item is _END:
                    finished = True
                    break
                batch.append(item)
                if item.error is None:
                    readable += 1
                else:
                    timings.skipped.append((item.name, item.error))
            images = [f.image for f in batch if f.error is None]
            outputs = iter([])
            if images:
                began = time.perf_counter()
                outputs = iter(predict(images))
                timings.model += time.perf_counter() - began
            for frame in batch:
                put(results, (frame, None if frame.error is not None else next(outputs)))
        put(results, _END)
        writer.join()
    finally:
        stop.set()
        reader.join()
        writer.join()
    timings.wall = time.perf_counter() - start
    for stage in (reader, writer):
        if stage.error is not None:
            raise stage.error
    return timings
