"""``setup_logger`` (Detectron2's signature and the run's three loggers), ``seed_all_rng`` and the
``EventStorage`` iteration helpers."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from project.engine.logger import setup_logger as setup_run_logging
from project.utils.env import TORCH_VERSION, seed_all_rng
from project.utils.events import EventStorage, TensorboardWriter, has_event_storage, storage_for_training_image
from project.utils.logger import setup_logger


@pytest.fixture
def restore_loggers():
    names = ("project", "fvcore", "__main__", "sample_pkg")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level) for name in names}
    yield
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)


def test_setup_logger_writes_a_named_file_and_replaces_its_handlers(tmp_path, capsys, restore_loggers):
    log_file = tmp_path / "sub" / "run.log"
    setup_logger(str(log_file), name="sample_pkg", abbrev_name="sp")
    logger = setup_logger(str(log_file), name="sample_pkg", abbrev_name="sp")  # a second call adds nothing
    assert len(logger.handlers) == 2 and logger.level == logging.DEBUG and not logger.propagate
    logging.getLogger("sample_pkg.module").debug("a debug record")
    assert "sp.module" in capsys.readouterr().out
    assert log_file.read_text().count("sample_pkg.module DEBUG] a debug record") == 1


def test_other_ranks_log_only_to_their_own_file(tmp_path, capsys, restore_loggers):
    setup_logger(str(tmp_path), distributed_rank=2, name="sample_pkg")
    logging.getLogger("sample_pkg").warning("from rank 2")
    assert capsys.readouterr().out == ""
    assert "from rank 2" in (tmp_path / "log.txt.rank2").read_text()


def test_run_logging_covers_project_fvcore_and_main_at_info(tmp_path, restore_loggers):
    setup_run_logging(str(tmp_path))
    logging.getLogger("fvcore.common").info("fvcore info")
    logging.getLogger("project.x").debug("hidden")
    text = (tmp_path / "log.txt").read_text()
    assert "fvcore.common INFO] fvcore info" in text and "hidden" not in text


def test_seed_all_rng_makes_every_generator_repeat():
    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert seed_all_rng(42) == 42
    first = draws()
    seed_all_rng(42)
    assert draws() == first
    assert 0 <= seed_all_rng() < 2**31
    assert TORCH_VERSION == tuple(int(v) for v in torch.__version__.split(".")[:2])


def test_event_storage_step_and_has_event_storage():
    assert not has_event_storage()
    with EventStorage(5) as storage:
        assert has_event_storage()
        storage.step()
        storage.put_scalar("loss", 1.0)
    assert storage.latest() == {"loss": (1.0, 6)} and not has_event_storage()


def test_put_histogram_counts_like_numpy_and_leaves_out_non_finite_values():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    with EventStorage(7) as storage:
        storage.put_histogram("finite", values, bins=10)
        storage.put_histogram("with_nan", torch.cat([values, torch.tensor([float("nan"), float("inf")])]), bins=10)
        storage.put_histogram("constant", torch.full((5,), 2.0))
        storage.put_histogram("no_finite_value", torch.tensor([float("nan")]))
    finite, with_nan, constant = storage.histograms()
    counts, edges = np.histogram(values.numpy(), bins=10)
    assert finite.bucket_counts == counts.tolist() and finite.iteration == 7
    assert finite.bucket_limits == pytest.approx(edges[1:].tolist(), rel=1e-5)
    assert (finite.min, finite.max) == (pytest.approx(float(values.min())), pytest.approx(float(values.max())))
    assert finite.num == 1000
    assert finite.sum == pytest.approx(float(values.sum()), abs=1e-3)
    assert finite.sum_squares == pytest.approx(float((values**2).sum()), rel=1e-5)
    assert with_nan.bucket_counts == finite.bucket_counts and with_nan.num == 1000
    assert (constant.bucket_limits, constant.bucket_counts, constant.num) == ([2.0], [5.0], 5)


def test_put_image_keeps_a_uint8_rgb_copy_until_cleared():
    with EventStorage(3) as storage:
        storage.put_image("float", torch.full((3, 4, 5), 0.5))
        storage.put_image("grey", np.full((4, 5), 200, np.uint8))
        assert storage.has_image("float") and not storage.has_image("other")
        storage.step()
        assert not storage.has_image("float")  # recorded at another iteration
        with pytest.raises(ValueError, match="shape"):
            storage.put_image("bad", torch.zeros(4, 4, 5))
    first, grey = storage.images()
    assert first.image.dtype == torch.uint8 and first.image.shape == (3, 4, 5) and int(first.image[0, 0, 0]) == 128
    assert grey.image.shape == (3, 4, 5) and int(grey.image.min()) == 200 and grey.iteration == 3
    storage.clear_images()
    assert storage.images() == []


def test_training_pictures_are_due_every_period_with_gradients_once_per_iteration():
    assert storage_for_training_image("picture", 2) is None  # no storage open
    with EventStorage(0) as storage:
        assert storage_for_training_image("picture", 0) is None
        assert storage_for_training_image("picture", 2) is storage
        with torch.no_grad():  # validation loss, batch-norm statistics
            assert storage_for_training_image("picture", 2) is None
        storage.put_image("picture", torch.zeros(3, 2, 2))
        assert storage_for_training_image("picture", 2) is None  # drawn already this iteration
        storage.iter = 1
        assert storage_for_training_image("picture", 2) is None
        storage.iter = 4
        assert storage_for_training_image("picture", 2) is storage


def test_tensorboard_writer_writes_images_and_histograms_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardWriter(str(tmp_path))
    with EventStorage(0) as storage:
        for iteration in range(2):
            storage.iter = iteration
            storage.put_scalar("loss", 1.0)
            storage.put_image("picture", torch.rand(3, 8, 6))
            storage.put_histogram("weights", torch.randn(50))
            writer.write()
            assert storage.images() == [] and storage.histograms() == []
        writer.write()  # nothing new
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    assert [(e.step, e.width, e.height) for e in events.Images("picture")] == [(0, 6, 8), (1, 6, 8)]
    assert [(e.step, e.histogram_value.num) for e in events.Histograms("weights")] == [(0, 50), (1, 50)]
