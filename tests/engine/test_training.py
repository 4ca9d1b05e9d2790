"""The training loop and its hooks: accumulation, AMP fallback, metrics files, evaluation,
best checkpoint, validation loss, precise batch-norm statistics."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg, load_cfg
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
from project.engine.hooks import PreciseBN, ValidationLoss


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
    """A 4-iteration run evaluated every 2 iterations, with the validation loss."""
    root = tmp_path_factory.mktemp("tiny_run")
    cfg, trainer, results = _train_tiny(
        root, "training_tiny", ["TEST.EVAL_PERIOD=2", "TEST.VAL_LOSS=true", "SOLVER.CHECKPOINT_PERIOD=2"]
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


def test_best_checkpoint_holds_the_best_metric(tiny_run):
    _, trainer, _, out = tiny_run
    history = [value for value, _ in trainer.storage.history("segm/AP").values()]
    best = torch.load(out / "model_best.pth", weights_only=True)
    assert best["best_metric"]["segm/AP"] == pytest.approx(max(history))


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
    # The same batches every time: recomputing with the final weights changes nothing, which
    # is what makes a resumed run's statistics equal an uninterrupted one's.
    assert model.training
    again = PreciseBN(0, model, lambda: DefaultTrainer.build_train_loader(cfg), num_iter=2)
    again.trainer = trainer
    again.update_stats()
    assert all(torch.allclose(model.state_dict()[k], v, rtol=1e-4, atol=1e-6) for k, v in stats.items())
