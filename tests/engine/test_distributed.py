"""Two processes (gloo, CPU) through ``launch``: identical weights (parameters and batch-norm
statistics) on every rank after training, and evaluation that sees every image exactly once."""

from __future__ import annotations

import json

import pytest
import torch
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg
from project.engine import DefaultTrainer, default_setup, launch
from project.evaluation import DatasetEvaluator
from project.utils import comm


class ImageIdRecorder(DatasetEvaluator):
    """Remembers which images each process evaluated (gathered on the main process)."""

    def reset(self):
        self.image_ids = []
        self.per_rank = None

    def process(self, inputs, outputs):
        assert len(inputs) == len(outputs)
        self.image_ids.extend(item["image_id"] for item in inputs)

    def evaluate(self):
        self.per_rank = comm.gather_to_main_process(self.image_ids)
        return None


def _flat_state(model):
    return torch.cat([t.detach().double().flatten() for t in model.state_dict().values()])


def _train_and_evaluate(overrides, result_file):
    cfg = get_cfg(overrides)
    default_setup(cfg)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = _flat_state(trainer.checkpointer.model)
    results = trainer.train()
    final = _flat_state(trainer.checkpointer.model)
    every_rank = comm.all_gather(final)
    recorder = ImageIdRecorder()
    DefaultTrainer.test(cfg, trainer.model, evaluators=[recorder])
    if comm.is_main_process():
        with open(result_file, "w") as f:
            json.dump(
                {
                    "world_size": comm.get_world_size(),
                    "ddp": type(trainer.model).__name__,
                    "identical": all(torch.equal(every_rank[0], other) for other in every_rank[1:]),
                    "changed": not torch.equal(initial, final),
                    "image_ids_per_rank": recorder.per_rank,
                    "tasks": sorted(results),
                },
                f,
            )


@pytest.mark.slow
def test_two_process_training_and_evaluation(tmp_path):
    train = ("distributed_tiny_train", *write_tiny_coco(tmp_path / "train", num_images=4, seed=5))
    val = ("distributed_tiny_val", *write_tiny_coco(tmp_path / "val", num_images=5, seed=6))
    overrides = tiny_overrides(train, [val], str(tmp_path / "out"), extra=["SOLVER.MAX_ITER=3"])
    result_file = tmp_path / "result.json"

    launch(_train_and_evaluate, 2, args=(overrides, str(result_file)), backend="gloo")

    result = json.loads(result_file.read_text())
    assert result["world_size"] == 2 and result["ddp"] == "DistributedDataParallel"
    assert result["changed"] and result["identical"]
    ids = [image_id for rank_ids in result["image_ids_per_rank"] for image_id in rank_ids]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert all(result["image_ids_per_rank"])  # both processes took part
    assert result["tasks"] == ["bbox", "segm"]
    assert (tmp_path / "out" / "model_final.pth").is_file()
