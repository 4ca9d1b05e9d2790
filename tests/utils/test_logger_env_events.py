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
from project.utils.events import EventStorage, has_event_storage
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
