"""The training loop and its hooks: accumulation, AMP fallback, metrics files, evaluation,
best checkpoint, validation loss, precise batch-norm statistics, TensorBoard pictures and
weight and gradient statistics."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from torch import nn
from training_fixtures import tiny_overrides, write_tiny_coco

from project.checkpoint import DetectionCheckpointer
from project.config import get_cfg, load_cfg
from project.data import get_detection_dataset_dicts, register_coco_instances, register_labelme_instances
from project.data.class_alignment import ClassSetMismatchError, with_aligned_datasets
from project.engine import (
    CommonMetricPrinter,
    DefaultTrainer,
    EvalHook,
    EventStorage,
    JSONWriter,
    SimpleTrainer,
    capture_rng_state,
    default_setup,
)
from project.engine.hooks import BestCheckpointer, ParameterStatistics, PreciseBN, ValidationLoss
from project.modeling.meta_arch.rcnn import PROPOSALS_IMAGE_NAME
from project.modeling.roi_heads.mask_head import MASKS_IMAGE_NAME
from project.structures import Boxes, Instances


class Regression(nn.Module):
    """Mean squared error of a linear model on a batch of ``{"x", "y"}`` dicts."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, batch):
        x = torch.stack([item["x"] for item in batch])
        y = torch.stack([item["y"] for item in batch])
        return {"loss_mse": ((self.linear(x) - y) ** 2).mean()}


def _samples(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(3, generator=g), "y": torch.randn(1, generator=g)} for _ in range(n)]


def _one_step(batches, accumulation_steps, **kwargs):
    torch.manual_seed(0)
    model = Regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = SimpleTrainer(model, iter(batches), optimizer, accumulation_steps=accumulation_steps, **kwargs)
    trainer.train(0, 1)
    return model, trainer


def test_gradient_accumulation_equals_one_large_batch():
    samples = _samples(4)
    large, _ = _one_step([samples], accumulation_steps=1)
    accumulated, trainer = _one_step([samples[:2], samples[2:]], accumulation_steps=2)
    for a, b in zip(large.parameters(), accumulated.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
    # The recorded loss is the mean over the accumulated batches.
    with torch.no_grad():
        torch.manual_seed(0)
        expected = Regression()(samples)["loss_mse"].item()
    assert trainer.storage.history("loss_mse").latest() == pytest.approx(expected, rel=1e-6)


def test_accumulation_draws_that_many_batches_per_step():
    batches = [[s] for s in _samples(6)]
    _, trainer = _one_step(batches, accumulation_steps=3)
    assert len(list(trainer._data_iter)) == 3  # 3 of 6 batches left after one step


def test_amp_without_cuda_falls_back_to_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="project.engine.train_loop"):
        _, trainer = _one_step([_samples(2)], accumulation_steps=1, amp=True)
    assert trainer.amp is False and trainer.grad_scaler is None
    assert "AMP needs CUDA" in caplog.text


def test_gradient_clipper_sees_gradients_before_the_step():
    seen = []

    def clipper(params):
        grads = [p.grad for p in params]
        seen.append(all(g is not None for g in grads))
        for g in grads:
            g.zero_()

    model, _ = _one_step([_samples(2)], accumulation_steps=1, grad_clipper=clipper)
    torch.manual_seed(0)
    untouched = Regression()
    assert seen == [True]
    # Zeroed gradients: SGD leaves the weights as they were.
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), untouched.parameters()))


def test_non_finite_loss_names_the_iteration():
    class Exploding(Regression):
        def forward(self, batch):
            return {"loss_mse": super().forward(batch)["loss_mse"] * float("inf")}

    trainer = SimpleTrainer(
        Exploding(), itertools.repeat(_samples(2)), torch.optim.SGD(Exploding().parameters(), lr=0.1)
    )
    with pytest.raises(FloatingPointError, match="iteration 0.*loss_mse=inf"):
        trainer.train(0, 2)


def test_eval_hook_leaves_random_generators_untouched():
    def consuming_evaluation():
        random.random()
        np.random.rand()
        torch.rand(3)
        return {"segm": {"AP": 12.5}}

    hook = EvalHook(eval_period=1, eval_function=consuming_evaluation)
    trainer = SimpleTrainer(
        Regression(), itertools.repeat(_samples(2)), torch.optim.SGD(Regression().parameters(), lr=0.1)
    )
    trainer.register_hooks([hook])
    trainer.train(0, 0)  # no iteration: only after_train runs the evaluation
    before = capture_rng_state()
    hook._do_eval()
    after = capture_rng_state()
    assert torch.equal(before["torch"], after["torch"]) and before["python"] == after["python"]
    assert torch.equal(before["numpy"]["keys"], after["numpy"]["keys"])
    assert trainer.storage.latest()["segm/AP"][0] == 12.5


def test_json_writer_writes_each_iteration_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JSONWriter(str(path), window_size=2)
    with EventStorage() as storage:
        for iteration in range(3):
            storage.iter = iteration
            storage.put_scalar("loss", float(iteration))
            storage.put_scalar("lr", 0.1, smoothing_hint=False)
            writer.write()
        writer.write()  # nothing new
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 1, 2]
    assert lines[2]["loss"] == 1.5  # median of the last 2 values
    assert lines[2]["lr"] == 0.1


def test_console_printer_plain_line_and_progress_bar(caplog, capsys):
    with EventStorage(start_iter=0) as storage:
        for iteration in range(4):
            storage.iter = iteration
            storage.put_scalars(total_loss=1.0, loss_cls=0.5, time=0.25, data_time=0.01)
            storage.put_scalar("lr", 0.02, smoothing_hint=False)
        with caplog.at_level(logging.INFO, logger="project.utils.events"):
            CommonMetricPrinter(max_iter=10, progress_bar=False).write()
        assert "eta: 0:00:01" in caplog.text and "iter: 3" in caplog.text and "total_loss: 1" in caplog.text
        bar = CommonMetricPrinter(max_iter=10, progress_bar=True)
        bar.write()
        bar.close()
    assert "4/10" in capsys.readouterr().err


def _train_tiny(root, prefix, extra):
    """Train the tiny model on 4 generated images (evaluated on 3) with ``extra`` overrides;
    returns the config, the trainer and the last evaluation's results."""
    train = (f"{prefix}_train", *write_tiny_coco(root / "train", num_images=4, seed=1))
    val = (f"{prefix}_val", *write_tiny_coco(root / "val", num_images=3, seed=2))
    cfg = get_cfg(tiny_overrides(train, [val], str(root / "out"), extra=extra))
    default_setup(cfg)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return cfg, trainer, trainer.train()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 4-iteration run evaluated every 2 iterations, with the validation loss, training
    pictures and weight and gradient statistics every 2 iterations, and the default number of
    evaluation pictures (4, of a 3-image validation set)."""
    root = tmp_path_factory.mktemp("tiny_run")
    cfg, trainer, results = _train_tiny(
        root,
        "training_tiny",
        [
            "TEST.EVAL_PERIOD=2",
            "TEST.VAL_LOSS=true",
            "SOLVER.CHECKPOINT_PERIOD=2",
            "VIS_PERIOD=2",
            "TENSORBOARD.HISTOGRAM_PERIOD=2",
        ],
    )
    return cfg, trainer, results, root / "out"


def test_run_writes_metrics_events_config_and_checkpoints(tiny_run):
    cfg, trainer, results, out = tiny_run
    assert set(results) == {"bbox", "segm"}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    by_iteration = {line["iteration"]: line for line in lines}
    assert {0, 1, 2, 3} <= set(by_iteration)
    assert all("total_loss" in by_iteration[i] and "lr" in by_iteration[i] for i in range(4))
    # Periodic evaluation after iteration 1 (2 iterations done), final one after training.
    assert "segm/AP" in by_iteration[1] and "segm/AP" in by_iteration[4]
    assert "val_total_loss" in by_iteration[1] and "val_loss_mask" in by_iteration[3]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out))
    assert (out / "inference" / "training_tiny_val" / "coco_instances_results.json").is_file()
    # The saved config reads back into the same config.
    assert load_cfg(out / "config.yaml") == cfg
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth", "model_best.pth"} <= set(os.listdir(out))
    # Resuming picks up the latest periodic checkpoint, never model_best.
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


def _tensorboard_events(directory):
    """Everything the run's TensorBoard event files hold (no sampling)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    events.Reload()
    return events


def test_run_writes_training_and_evaluation_pictures_at_their_periods(tiny_run):
    _, _, _, out = tiny_run
    events = _tensorboard_events(out)

    def steps(tag):
        return [event.step for event in events.Images(tag)]

    # VIS_PERIOD=2 from iteration 0; ground truth and proposals side by side.
    assert steps(PROPOSALS_IMAGE_NAME) == [0, 2] and steps(MASKS_IMAGE_NAME) == [0, 2]
    picture = events.Images(PROPOSALS_IMAGE_NAME)[0]
    assert (picture.width, picture.height) == (2 * 96 + 4, 96)
    # At each evaluation (after iteration 1, and at the end: step 4), every validation image.
    evaluation = sorted(tag for tag in events.Tags()["images"] if tag.startswith("eval_predictions/"))
    assert evaluation == ["eval_predictions/0_001.png", "eval_predictions/1_002.png", "eval_predictions/2_003.png"]
    assert all(steps(tag) == [1, 4] for tag in evaluation)
    assert {PROPOSALS_IMAGE_NAME, MASKS_IMAGE_NAME, *evaluation} == set(events.Tags()["images"])


def test_run_writes_weight_and_gradient_histograms_and_gradient_norms(tiny_run):
    _, trainer, _, out = tiny_run
    events = _tensorboard_events(out)
    parameters = {name: p for name, p in trainer.checkpointer.model.named_parameters() if p.requires_grad}
    histograms = set(events.Tags()["histograms"])
    assert histograms == {f"{kind}/{name}" for kind in ("weights", "grads") for name in parameters}
    assert all([event.step for event in events.Histograms(tag)] == [0, 2] for tag in histograms)
    name, parameter = next(iter(parameters.items()))
    assert events.Histograms(f"weights/{name}")[0].histogram_value.num == parameter.numel()

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    with_norms = [line for line in lines if "grad_norm/total" in line]
    assert [line["iteration"] for line in with_norms] == [0, 2]
    layers = {key.split("/", 1)[1]: value for key, value in with_norms[0].items() if key.startswith("grad_norm/")}
    total = layers.pop("total")
    assert set(layers) == {name.rsplit(".", 1)[0] for name in parameters}
    assert total == pytest.approx(math.sqrt(sum(value**2 for value in layers.values())), rel=1e-4)
    assert [event.step for event in events.Scalars("grad_norm/total")] == [0, 2]


def test_training_pictures_and_statistics_change_no_weight(tmp_path):
    train = ("summaries_train", *write_tiny_coco(tmp_path / "train", num_images=4, seed=1))
    finals = []
    for name, extra in (("off", []), ("on", ["VIS_PERIOD=1", "TENSORBOARD.HISTOGRAM_PERIOD=1"])):
        overrides = ["SOLVER.MAX_ITER=3", "SOLVER.BEST_CHECKPOINT_METRIC=", *extra]
        cfg = get_cfg(tiny_overrides(train, [], str(tmp_path / name), extra=overrides))
        default_setup(cfg)
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        finals.append(trainer.checkpointer.model.state_dict())
    assert all(torch.equal(finals[0][key], finals[1][key]) for key in finals[0])


def test_parameter_statistics_see_the_unclipped_gradients_and_the_weights_before_the_step():
    torch.manual_seed(0)
    model = Regression()
    weights_before = model.linear.weight.detach().clone()
    samples = _samples(4)
    model(samples)["loss_mse"].backward()
    expected_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    model.zero_grad()

    def zeroing_clipper(params):
        for p in params:
            p.grad.zero_()

    trainer = SimpleTrainer(
        model, iter([samples]), torch.optim.SGD(model.parameters(), lr=0.1), grad_clipper=zeroing_clipper
    )
    trainer.register_hooks([ParameterStatistics(model, period=1, bins=8)])
    trainer.train(0, 1)
    latest = trainer.storage.latest()
    assert latest["grad_norm/linear"] == (pytest.approx(expected_norm, rel=1e-5), 0)
    assert latest["grad_norm/total"][0] == pytest.approx(expected_norm, rel=1e-5)
    recorded = {h.name: h for h in trainer.storage.histograms()}
    assert set(recorded) == {"weights/linear.weight", "weights/linear.bias", "grads/linear.weight", "grads/linear.bias"}
    weight = recorded["weights/linear.weight"]
    assert (weight.min, weight.max) == pytest.approx((float(weights_before.min()), float(weights_before.max())))
    assert sum(weight.bucket_counts) == weight.num == 3


def test_parameter_statistics_only_every_period_from_iteration_zero():
    model = Regression()
    trainer = SimpleTrainer(model, itertools.repeat(_samples(2)), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.register_hooks([ParameterStatistics(model, period=3)])
    trainer.train(0, 7)
    assert [iteration for _, iteration in trainer.storage.history("grad_norm/total").values()] == [0, 3, 6]
    assert sorted({h.iteration for h in trainer.storage.histograms()}) == [0, 3, 6]


def test_best_checkpoint_holds_the_best_metric_and_the_weights_it_was_measured_on(tiny_run):
    _, trainer, _, out = tiny_run
    history = trainer.storage.history("segm/AP").values()  # (value, iteration), in order
    best_value = max(value for value, _ in history)
    first_best_iteration = next(iteration for value, iteration in history if value == best_value)
    best = torch.load(out / "model_best.pth", weights_only=True)
    assert best["best_metric"]["segm/AP"] == pytest.approx(best_value)
    assert best["iteration"] == first_best_iteration  # a tie does not replace the first best
    # Evaluations fall on checkpoint iterations here: the best weights are that checkpoint's.
    others = {name: torch.load(out / name, weights_only=True) for name in os.listdir(out) if name.startswith("model_0")}
    others["model_final.pth"] = torch.load(out / "model_final.pth", weights_only=True)
    same_iteration = [name for name, ckpt in others.items() if ckpt["iteration"] == best["iteration"]]
    assert same_iteration, sorted((name, ckpt["iteration"]) for name, ckpt in others.items())
    for name in same_iteration:
        assert all(torch.equal(value, others[name]["model"][key]) for key, value in best["model"].items()), name
    # and the checkpoints differ from each other, so the comparison could fail.
    assert any(
        not torch.equal(value, ckpt["model"][key]) for ckpt in others.values() for key, value in best["model"].items()
    )


def test_validation_loss_changes_nothing(tiny_run):
    cfg, trainer, _, _ = tiny_run
    model = trainer.checkpointer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    hook = ValidationLoss(DefaultTrainer.build_validation_loader(cfg), period=1)
    hook.trainer = trainer
    with EventStorage(start_iter=7) as storage:
        trainer.storage = storage
        trainer.iter = 7
        hook.after_step()
    assert storage.latest()["val_total_loss"][0] > 0
    # The model's training statistics on validation batches stay out of the run's metrics.
    assert not [name for name in storage.latest() if name.startswith(("rpn/", "roi_head/", "fast_rcnn/", "mask_rcnn/"))]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for grad, param in zip(grads_before, model.parameters()):
        assert (grad is None and param.grad is None) or torch.equal(grad, param.grad)
    assert model.training


class Normalised(nn.Module):
    """A batch norm in front of a linear model, trained on batches of ``{"x", "y"}`` dicts."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.linear = nn.Linear(3, 1)

    def forward(self, batch):
        x = torch.stack([item["x"] for item in batch])
        y = torch.stack([item["y"] for item in batch])
        return {"loss_mse": ((self.linear(self.norm(x)) - y) ** 2).mean()}


class RecordingLoader:
    """Endless batches of 4 samples far from zero mean and unit variance, drawn from the global
    generator; records every batch and how many iterators were opened."""

    def __init__(self):
        self.iterators = 0
        self.batches = []

    def __iter__(self):
        self.iterators += 1
        while True:
            batch = [{"x": torch.randn(3) * 3 + 5, "y": torch.randn(1)} for _ in range(4)]
            self.batches.append(batch)
            yield batch


def test_precise_bn_sets_the_average_over_its_batches_at_each_period_and_the_end():
    torch.manual_seed(0)
    model = Normalised()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, itertools.cycle([_samples(4, seed=s) for s in range(3)]), optimizer)
    loader, factory_calls = RecordingLoader(), []
    hook = PreciseBN(period=2, model=model, data_loader_factory=lambda: factory_calls.append(1) or loader, num_iter=3)
    trainer.register_hooks([hook])
    trainer.train(0, 5)
    # Updates after iterations 2, 4 and 5 (the last), each from a fresh iterator of one loader.
    assert len(factory_calls) == 1 and loader.iterators == 3 and len(loader.batches) == 9
    last = torch.stack([item["x"] for batch in loader.batches[-3:] for item in batch])
    assert torch.allclose(model.norm.running_mean, last.mean(0), atol=1e-5)
    assert torch.allclose(model.norm.running_var, last.var(0, unbiased=False), atol=1e-4)
    assert model.norm.momentum == 0.1 and model.training


def test_precise_bn_leaves_weights_generators_and_metrics_untouched():
    torch.manual_seed(0)
    model = Normalised()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, itertools.cycle([_samples(4)]), optimizer)
    trainer.train(0, 1)
    hook = PreciseBN(period=0, model=model, data_loader_factory=RecordingLoader, num_iter=2)
    hook.trainer = trainer
    parameters = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    rng = capture_rng_state()
    with EventStorage(start_iter=1) as storage:
        trainer.storage = storage
        trainer.iter = 0  # next_iter 1 == max_iter: the update after the last iteration
        hook.after_step()
    assert not torch.allclose(model.norm.running_mean, torch.zeros(3), atol=1.0)  # moved to the data's ~5
    assert all(torch.equal(a, p) for a, p in zip(parameters, model.parameters()))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert torch.equal(rng["torch"], capture_rng_state()["torch"])
    assert not storage.latest()


def test_precise_bn_runs_before_the_final_checkpoint(tmp_path):
    cfg, trainer, _ = _train_tiny(
        tmp_path, "precise_bn", ["TEST.PRECISE_BN.ENABLED=true", "TEST.PRECISE_BN.NUM_ITER=2", "SOLVER.MAX_ITER=2"]
    )
    model = trainer.checkpointer.model
    saved = torch.load(tmp_path / "out" / "model_final.pth", weights_only=True)["model"]
    stats = {k: v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    assert len(stats) > 10 and all(torch.equal(saved[k], v) for k, v in stats.items())
    # The same run without the hook: the same weights, other statistics (so the hook did run).
    _, _, _ = _train_tiny(tmp_path / "plain", "plain_bn", ["SOLVER.MAX_ITER=2"])
    plain = torch.load(tmp_path / "plain" / "out" / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(plain[k], v) for k, v in saved.items() if k not in stats and "num_batches" not in k)
    assert all(not torch.allclose(plain[k], v) for k, v in stats.items())
    # The same batches every time: recomputing with the final weights changes nothing, which
    # is what makes a resumed run's statistics equal an uninterrupted one's.
    assert model.training
    again = PreciseBN(0, model, lambda: DefaultTrainer.build_train_loader(cfg), num_iter=2)
    again.trainer = trainer
    again.update_stats()
    assert all(torch.allclose(model.state_dict()[k], v, rtol=1e-4, atol=1e-6) for k, v in stats.items())


# --------------------------------------------------------------------------- class sets of the datasets

CLASSES = ("a", "b")


def _two_class_annotations(root):
    """Images of the tiny generator whose disks are classes "a" and "b" in turn: per image file
    name, a list of (class name, flat polygon, XYWH box of the polygon's points)."""
    json_file, image_root = write_tiny_coco(root, num_images=4, seed=11)
    data = json.loads(open(json_file).read())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    instances = {name: [] for name in names.values()}
    for index, annotation in enumerate(data["annotations"]):
        polygon = annotation["segmentation"][0]
        xs, ys = polygon[0::2], polygon[1::2]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        instances[names[annotation["image_id"]]].append((CLASSES[index % 2], polygon, box))
    return image_root, instances


def _write_coco(path, instances, category_names):
    """A COCO file of ``instances`` whose category ids 1, 2, ... follow ``category_names``."""
    ids = {name: i + 1 for i, name in enumerate(category_names)}
    images, annotations = [], []
    for image_id, (file_name, objects) in enumerate(sorted(instances.items()), start=1):
        images.append({"id": image_id, "file_name": file_name, "height": 96, "width": 96})
        for name, polygon, box in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[name],
                    "iscrowd": 0,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "segmentation": [polygon],
                }
            )
    categories = [{"id": i, "name": name} for name, i in ids.items()]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def _write_labelme(directory, instances, keep):
    """One LabelMe file per image with the instances of the classes in ``keep``."""
    directory.mkdir()
    for file_name, objects in instances.items():
        shapes = [
            {"label": name, "points": [list(p) for p in zip(polygon[0::2], polygon[1::2])], "shape_type": "polygon"}
            for name, polygon, _ in objects
            if name in keep
        ]
        record = {"shapes": shapes, "imagePath": file_name, "imageHeight": 96, "imageWidth": 96}
        (directory / f"{file_name}.json").write_text(json.dumps(record))
    return str(directory)


class FixedPredictions(nn.Module):
    """Answers each image with the detections listed for its file name: (class name, XYWH box,
    score) rows; the class index is the name's position in ``classes`` (the training order)."""

    def __init__(self, detections, classes):
        super().__init__()
        self._detections = detections
        self._classes = list(classes)

    def forward(self, inputs):
        outputs = []
        for item in inputs:
            rows = self._detections[os.path.basename(item["file_name"])]
            boxes = torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h), _ in rows], dtype=torch.float32)
            instances = Instances((item["height"], item["width"]))
            instances.pred_boxes = Boxes(boxes.reshape(-1, 4))
            instances.scores = torch.tensor([score for _, _, score in rows], dtype=torch.float32)
            instances.pred_classes = torch.tensor([self._classes.index(name) for name, _, _ in rows], dtype=torch.int64)
            outputs.append({"instances": instances})
        return outputs


def _imperfect_detections(instances, seed=0):
    """Shifted boxes, some with the other class, and random scores, so that AP-a and AP-b
    are neither 0 nor 100 and differ from each other."""
    rng = np.random.default_rng(seed)
    detections = {}
    for file_name, objects in instances.items():
        rows = []
        for name, _, (x, y, w, h) in objects:
            shift = float(rng.uniform(0, 0.4)) * w
            predicted = name if rng.random() < 0.7 else CLASSES[1 - CLASSES.index(name)]
            rows.append((predicted, (x + shift, y, w, h), float(rng.uniform(0.1, 1.0))))
        detections[file_name] = rows
    return detections


@pytest.fixture(scope="module")
def class_sets(tmp_path_factory):
    """Datasets of the same images: 'classes_ab' (categories a, b), 'classes_ba' (b, a),
    'classes_b_labelme' (LabelMe, only the b instances, so its classes are derived as [b]),
    'classes_abc' (a, b and c); and detections of a model trained on classes_ab."""
    root = tmp_path_factory.mktemp("class_sets")
    image_root, instances = _two_class_annotations(root / "images")
    register_coco_instances("classes_ab", {}, _write_coco(root / "ab.json", instances, ["a", "b"]), image_root)
    register_coco_instances("classes_ba", {}, _write_coco(root / "ba.json", instances, ["b", "a"]), image_root)
    register_coco_instances("classes_abc", {}, _write_coco(root / "abc.json", instances, ["a", "b", "c"]), image_root)
    register_labelme_instances("classes_b_labelme", {}, _write_labelme(root / "labelme", instances, {"b"}), image_root)
    return root, image_root, _imperfect_detections(instances)


def _class_set_cfg(root, train, test, extra=()):
    files = ("", "")  # registered already: tiny_overrides' entries for them are skipped
    return get_cfg(
        tiny_overrides((train[0], *files), [(name, *files) for name in test], str(root / "out"))
        + ["MODEL.ROI_HEADS.NUM_CLASSES=2", f"DATASETS.TRAIN=[{', '.join(train)}]", *extra]
    )


def test_test_set_with_classes_in_another_order_is_scored_by_name(class_sets, tmp_path):
    root, _, detections = class_sets
    cfg = _class_set_cfg(tmp_path, ["classes_ab"], ["classes_ab", "classes_ba", "classes_b_labelme"])

    results = DefaultTrainer.test(cfg, FixedPredictions(detections, CLASSES))

    ordered, reordered, subset = (results[name]["bbox"] for name in cfg.DATASETS.TEST)
    assert 0 < ordered["AP-a"] < 100 and 0 < ordered["AP-b"] < 100 and ordered["AP-a"] != ordered["AP-b"]
    np.testing.assert_equal(reordered, ordered)  # every metric, NaN where both are NaN
    assert subset["AP-b"] == ordered["AP-b"] and subset["AP"] == ordered["AP-b"] and math.isnan(subset["AP-a"])
    assert (tmp_path / "out" / "inference" / "classes_ba" / "coco_instances_results.json").is_file()


def test_second_training_set_with_classes_in_another_order_is_mapped_by_name(class_sets, tmp_path):
    cfg = _class_set_cfg(tmp_path, ["classes_ab", "classes_ba"], [])

    aligned = with_aligned_datasets(cfg)

    dicts = get_detection_dataset_dicts(list(aligned.DATASETS.TRAIN), filter_empty=False)
    first, second = dicts[: len(dicts) // 2], dicts[len(dicts) // 2 :]
    assert [[a["category_id"] for a in d["annotations"]] for d in first] == [
        [a["category_id"] for a in d["annotations"]] for d in second
    ]
    assert list(cfg.DATASETS.TRAIN) == ["classes_ab", "classes_ba"]  # the run's config is left as it was


@pytest.mark.parametrize(
    "train, test, role",
    [(["classes_ab"], ["classes_abc"], "DATASETS.TEST"), (["classes_ab", "classes_abc"], [], "DATASETS.TRAIN")],
)
def test_dataset_with_a_class_the_training_set_lacks_stops_before_any_work(
    class_sets, tmp_path, monkeypatch, train, test, role
):
    cfg = _class_set_cfg(tmp_path, train, test)
    monkeypatch.setattr(DefaultTrainer, "build_model", classmethod(lambda cls, cfg: pytest.fail("model built")))

    with pytest.raises(ClassSetMismatchError) as raised:
        DefaultTrainer(cfg)

    message = str(raised.value)
    assert role in message and "'classes_abc'" in message and "'classes_ab'" in message
    assert "['a', 'b', 'c']" in message and "['a', 'b']" in message and "'c'" in message and "\n" not in message


def test_setup_removes_the_temporaries_of_killed_saves(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    stale = out / f".model_0000004.pth.{dead_pid}.{uuid.uuid4().hex}.tmp"
    in_progress = out / f".last_checkpoint.{os.getpid()}.{uuid.uuid4().hex}.tmp"  # this process is alive
    unrelated = out / ".notes.tmp"
    for path in (stale, in_progress, unrelated):
        path.write_bytes(b"partial")

    default_setup(get_cfg(["MODEL.DEVICE=cpu", f"OUTPUT_DIR={out}"]))

    assert not stale.exists() and in_progress.exists() and unrelated.exists()
    assert stale.name in (out / "log.txt").read_text()


def test_best_checkpoint_is_saved_past_an_unusable_last_checkpoint(tmp_path):
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe")  # left by an earlier run, no checkpoint beside it
    hook = BestCheckpointer(DetectionCheckpointer(Regression(), str(tmp_path)), "segm/AP")

    hook._save(iteration=3, value=12.5)

    assert sorted(os.listdir(tmp_path)) == ["model_best.pth"]  # the unusable record is gone
