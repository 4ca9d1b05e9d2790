"""The demo's reader / model / writer pipeline: order, batching, skipped frames and errors."""

from __future__ import annotations

import numpy as np
import pytest

from project.demo.pipeline import run_pipeline
from project.demo.sources import Frame


def _frames(count, broken=()):
    for i in range(count):
        if i in broken:
            yield Frame(i, f"f{i}", error="cannot decode")
        else:
            yield Frame(i, f"f{i}", image=np.full((4, 4, 3), i, dtype=np.uint8))


def test_every_frame_reaches_the_writer_in_order_with_its_own_output_and_batches_are_bounded():
    batches, handled = [], []

    def predict(images):
        batches.append(len(images))
        return [int(image[0, 0, 0]) * 10 for image in images]

    def handle(frame, output):
        handled.append((frame.index, output))
        return 0.0, 0.0

    timings = run_pipeline(_frames(11, broken={4}), predict, handle, batch_size=3)
    assert handled == [(i, None if i == 4 else i * 10) for i in range(11)]
    assert max(batches) == 3 and sum(batches) == 10
    assert timings.frames == 10 and timings.skipped == [("f4", "cannot decode")]
    assert timings.wall > 0 and timings.model > 0


@pytest.mark.parametrize("stage", ["predict", "handle"])
def test_an_error_in_a_stage_ends_the_run_with_that_error(stage):
    def predict(images):
        if stage == "predict":
            raise RuntimeError("model failed")
        return [0] * len(images)

    def handle(frame, output):
        if stage == "handle" and frame.index == 5:
            raise RuntimeError("writer failed")
        return 0.0, 0.0

    with pytest.raises(RuntimeError, match="failed"):
        run_pipeline(_frames(200), predict, handle, batch_size=2)
