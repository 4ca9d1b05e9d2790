"""Resume: a run stopped midway and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Optional

import pytest
import torch
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg
from project.engine import DefaultTrainer, HookBase, default_setup

# Ten short training runs with full checkpoints (three with loader workers) and two loader
# reads: about 20-30 s on two busy CPU cores.
pytestmark = pytest.mark.slow


class Interrupted(RuntimeError):
    pass


class StopBefore(HookBase):
    """Simulates a crash: raises before iteration ``iteration`` runs."""

    def __init__(self, iteration: int):
        self._iteration = iteration

    def before_step(self) -> None:
        if self.trainer.iter == self._iteration:
            raise Interrupted(f"stopped before iteration {self._iteration}")


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    # One image, so every batch is the same whatever the sampler's order: the comparison is
    # about the trainer's state (weights, optimizer, scheduler, RNG), not the data order.
    json_file, image_root = write_tiny_coco(tmp_path_factory.mktemp("resume_data"), num_images=1, seed=3)
    return "resume_tiny", json_file, image_root


@pytest.fixture(scope="module")
def seven_images(tmp_path_factory):
    # Seven same-sized images (one aspect-ratio group), shuffled, flipped at random: each
    # iteration's batch depends on where the sampler's stream and the flips' generator are,
    # and the interruption falls in the middle of an epoch.
    json_file, image_root = write_tiny_coco(tmp_path_factory.mktemp("resume_data_7"), num_images=7, seed=5)
    return "resume_tiny_7", json_file, image_root


# Two accumulated batches of one image per iteration: the stream advances ACCUM_ITER batches per step.
SHUFFLED_FLIPPED_DATA = ["INPUT.RANDOM_FLIP=horizontal", "SOLVER.ACCUM_ITER=2"]


def _run(dataset, output_dir, *, resume=False, stop_before=None, extra=()):
    # ``extra`` comes last: its values replace the ones above (e.g. a longer SOLVER.MAX_ITER).
    cfg = get_cfg(
        tiny_overrides(
            dataset,
            [],
            str(output_dir),
            extra=[
                "SOLVER.MAX_ITER=6",
                "SOLVER.STEPS=[4]",
                "SOLVER.CHECKPOINT_PERIOD=3",
                "DETERMINISTIC=true",
                "SEED=11",
                *extra,
            ],
        )
    )
    default_setup(cfg)
    trainer = DefaultTrainer(cfg)
    if stop_before is not None:
        trainer.register_hooks([StopBefore(stop_before)])
    trainer.resume_or_load(resume=resume)
    start_iter = trainer.start_iter
    try:
        trainer.train()
    except Interrupted:
        pass
    finally:
        # Shut persistent loader workers down now, not when the trainer is collected.
        trainer._trainer.data_loader = None
    return trainer, start_iter


@pytest.fixture(scope="module")
def uninterrupted(one_image, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    try:
        trainer, _ = _run(one_image, output_dir)
    finally:
        torch.use_deterministic_algorithms(False)
    return trainer, output_dir


def _interrupt_and_resume(dataset, output_dir, extra=(), *, stop_before=4, last_checkpoint=2):
    """Run until the crash before iteration ``stop_before`` (the last checkpoint written
    after iteration ``last_checkpoint``), then resume."""
    try:
        interrupted, _ = _run(dataset, output_dir, stop_before=stop_before, extra=extra)
        assert interrupted.iter == stop_before
        with open(output_dir / "last_checkpoint") as f:
            assert f.read() == f"model_{last_checkpoint:07d}.pth"
        resumed, start_iter = _run(dataset, output_dir, resume=True, extra=extra)
    finally:
        torch.use_deterministic_algorithms(False)
    assert start_iter == last_checkpoint + 1
    return resumed


def _first_difference(a: Any, b: Any, path: str = "") -> Optional[str]:
    """Where nested states ``a`` and ``b`` (dicts, lists and tuples of tensors and plain values)
    first differ, as ``path: what differs``; None when they are equal: the same keys at every
    level, sequences of the same lengths, tensors of the same dtype, shape and values
    (``torch.equal``), other values of the same type and equal."""
    where = path or "<top>"
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        only_a = [k for k in a if k not in b]
        only_b = [k for k in b if k not in a]
        if only_a or only_b:
            return f"{where}: keys only in the first {only_a}, only in the second {only_b}"
        for key in a:
            difference = _first_difference(a[key], b[key], f"{path}[{key!r}]")
            if difference:
                return difference
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            difference = _first_difference(x, y, f"{path}[{i}]")
            if difference:
                return difference
        return None
    if type(a) is not type(b):
        return f"{where}: a {type(a).__name__} and a {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}: {a.dtype} {tuple(a.shape)} != {b.dtype} {tuple(b.shape)}"
        if not torch.equal(a, b):
            return f"{where}: tensors differ (max |difference| {(a.double() - b.double()).abs().max().item():.3g})"
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def _assert_same_state(a, b):
    difference = _first_difference(a, b)
    assert difference is None, difference


def _assert_same_end(resumed, reference, max_iter=6):
    assert resumed.iter == reference.iter == max_iter
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [g["lr"] for g in reference.optimizer.param_groups]
    _assert_same_state(resumed.scheduler.state_dict(), reference.scheduler.state_dict())
    _assert_same_state(resumed.optimizer.state_dict(), reference.optimizer.state_dict())
    _assert_same_state(resumed.checkpointer.model.state_dict(), reference.checkpointer.model.state_dict())


def _optimizer_like_state(momentum=(1.0, 1.0), groups=({"lr": 0.1, "params": [0]},)):
    return {"state": {0: {"momentum_buffer": torch.tensor(momentum)}}, "param_groups": [dict(g) for g in groups]}


def test_state_comparison_sees_every_key_and_names_the_first_difference():
    state = _optimizer_like_state()
    _assert_same_state(state, _optimizer_like_state())
    # What differs from ``state``, and the path and description the failure gives.
    differing = [
        ({**state, "state": {}}, "['state']: keys only in the first [0], only in the second []"),
        ({**state, "grad_scaler": {}}, "<top>: keys only in the first [], only in the second ['grad_scaler']"),
        (_optimizer_like_state(momentum=(1.0, 2.0)), "['state'][0]['momentum_buffer']: tensors differ"),
        (_optimizer_like_state(groups=({"params": [0]},)), "['param_groups'][0]: keys only in the first ['lr']"),
        (_optimizer_like_state(groups=({"lr": 0.1, "params": [0]},) * 2), "['param_groups']: lengths 1 != 2"),
    ]
    for other, message in differing:
        with pytest.raises(AssertionError, match=re.escape(message)):
            _assert_same_state(state, other)
        with pytest.raises(AssertionError):  # and the other way round
            _assert_same_state(other, state)


def test_resumed_run_matches_uninterrupted_run(one_image, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    # Iteration 3 runs but its state is never checkpointed: it is lost, as in a crash.
    resumed = _interrupt_and_resume(one_image, tmp_path / "interrupted")
    _assert_same_end(resumed, reference)
    # And the run did change the weights: the comparison is not between two untouched models.
    initial = torch.load(tmp_path / "interrupted" / "model_0000002.pth", weights_only=True)["model"]
    final = reference.checkpointer.model.state_dict()
    assert any(not torch.equal(initial[k], final[k]) for k in initial)


def test_resuming_a_finished_run_runs_no_iteration(one_image, uninterrupted):
    finished, output_dir = uninterrupted
    assert os.path.isfile(output_dir / "model_final.pth")
    resumed, start_iter = _run(one_image, output_dir, resume=True)
    assert start_iter == 6 and resumed.iter == 6
    _assert_same_state(resumed.checkpointer.model.state_dict(), finished.checkpointer.model.state_dict())


def test_resumed_run_continues_the_data_stream(seven_images, tmp_path):
    # The resumed run must take batches 6.. of the shuffled stream (3 iterations x 2 batches)
    # and the flips the uninterrupted run drew for them, or its weights end elsewhere.
    try:
        reference, _ = _run(seven_images, tmp_path / "uninterrupted", extra=SHUFFLED_FLIPPED_DATA)
    finally:
        torch.use_deterministic_algorithms(False)
    resumed = _interrupt_and_resume(seven_images, tmp_path / "interrupted", extra=SHUFFLED_FLIPPED_DATA)
    _assert_same_end(resumed, reference)


# As users run it: loader workers, random flips in both directions, shuffled images, a
# checkpoint every 2 iterations, and a crash after the third (after iteration 5; iteration 6
# runs and is lost): the resumed stream starts at its 13th image, in the second epoch of 7.
WORKERS_FLIPS_CHECKPOINTS = [
    "DATALOADER.NUM_WORKERS=2",
    "INPUT.RANDOM_FLIP=both",
    "SOLVER.MAX_ITER=8",
    "SOLVER.STEPS=[5]",
    "SOLVER.CHECKPOINT_PERIOD=2",
]


def test_resumed_run_with_loader_workers_matches_uninterrupted_run(seven_images, tmp_path):
    # The flips happen in the workers: a resumed run's workers must draw, for each image of
    # the stream, the flips the uninterrupted run's workers drew for it.
    try:
        reference, _ = _run(seven_images, tmp_path / "uninterrupted", extra=WORKERS_FLIPS_CHECKPOINTS)
    finally:
        torch.use_deterministic_algorithms(False)
    resumed = _interrupt_and_resume(
        seven_images, tmp_path / "interrupted", WORKERS_FLIPS_CHECKPOINTS, stop_before=7, last_checkpoint=5
    )
    assert sorted(p.name for p in (tmp_path / "interrupted").glob("model_*.pth")) == [
        "model_0000001.pth",
        "model_0000003.pth",
        "model_0000005.pth",
        "model_0000007.pth",  # by the resumed run
        "model_final.pth",
    ]
    _assert_same_end(resumed, reference, max_iter=8)


def _batches(cfg, start_iter, count):
    """(file name, image) of each image of ``count`` training batches from ``start_iter`` on."""
    stream = iter(DefaultTrainer.build_train_loader(cfg, start_iter=start_iter))
    try:
        return [[(d["file_name"], d["image"]) for d in next(stream)] for _ in range(count)]
    finally:
        del stream  # shuts the workers down


def test_loader_with_workers_resumes_its_stream_flips_included(seven_images, tmp_path):
    # The loader alone, to name the batch that differs when the run comparison above fails.
    cfg = get_cfg(tiny_overrides(seven_images, [], str(tmp_path), extra=[*WORKERS_FLIPS_CHECKPOINTS, "SEED=11"]))
    first_run = _batches(cfg, 0, 10)
    resumed = _batches(cfg, 6, 4)
    for i, (batch, expected) in enumerate(zip(resumed, first_run[6:]), start=6):
        assert [name for name, _ in batch] == [name for name, _ in expected], f"batch {i}: other images"
        for (name, image), (_, expected_image) in zip(batch, expected):
            assert torch.equal(image, expected_image), f"batch {i}: {name} flipped otherwise"
    # The flips are random: some image is read differently at different places in the stream.
    images_of = {}
    for name, image in (item for batch in first_run for item in batch):
        images_of.setdefault(name, []).append(image)
    assert any(any(not torch.equal(images[0], other) for other in images[1:]) for images in images_of.values())
