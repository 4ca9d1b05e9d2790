"""Resume: a run stopped midway and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os

import pytest
import torch
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg
from project.engine import DefaultTrainer, HookBase, default_setup

# Six short training runs with full checkpoints: about a minute on two busy CPU cores.
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
    return trainer, start_iter


@pytest.fixture(scope="module")
def uninterrupted(one_image, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    try:
        trainer, _ = _run(one_image, output_dir)
    finally:
        torch.use_deterministic_algorithms(False)
    return trainer, output_dir


def _interrupt_and_resume(dataset, output_dir, extra=()):
    """Run until the crash before iteration 4 (last checkpoint after iteration 2), then resume."""
    try:
        interrupted, _ = _run(dataset, output_dir, stop_before=4, extra=extra)
        assert interrupted.iter == 4
        with open(output_dir / "last_checkpoint") as f:
            assert f.read() == "model_0000002.pth"
        resumed, start_iter = _run(dataset, output_dir, resume=True, extra=extra)
    finally:
        torch.use_deterministic_algorithms(False)
    assert start_iter == 3
    return resumed


def _assert_same_state(a, b):
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        elif isinstance(value, dict):
            _assert_same_state(value, b[key])
        else:
            assert value == b[key], key


def _assert_same_end(resumed, reference):
    assert resumed.iter == reference.iter == 6
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [g["lr"] for g in reference.optimizer.param_groups]
    assert resumed.scheduler.state_dict() == reference.scheduler.state_dict()
    _assert_same_state(resumed.optimizer.state_dict(), reference.optimizer.state_dict())
    _assert_same_state(resumed.checkpointer.model.state_dict(), reference.checkpointer.model.state_dict())


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
