"""The test helpers Detectron2's tests import from ``utils.testing``."""

from __future__ import annotations

import pytest
import torch

from project.structures import Boxes, Instances
from project.utils.testing import (
    assert_instances_allclose,
    convert_scripted_instances,
    get_model_no_weights,
    get_sample_coco_image,
    random_boxes,
    reload_script_model,
)


def test_random_boxes_are_valid_and_use_one_draw_of_the_global_generator():
    torch.manual_seed(0)
    boxes = random_boxes(50, max_coord=200)
    after = torch.rand(1)
    torch.manual_seed(0)
    draw = torch.rand(50, 4) * 100
    assert torch.equal(torch.rand(1), after)
    assert boxes.shape == (50, 4) and boxes.dtype == torch.float32
    assert (boxes[:, :2] >= 1).all() and (boxes[:, 2:] >= boxes[:, :2]).all() and (boxes < 200).all()
    assert torch.equal(boxes[:, :2], draw[:, :2].clamp(min=1.0))


def _instances() -> Instances:
    generator = torch.Generator().manual_seed(0)
    boxes = Boxes(torch.rand(4, 4, generator=generator) * 100)
    return Instances((30, 40), pred_boxes=boxes, scores=torch.rand(4, generator=generator), classes=torch.arange(4))


def test_assert_instances_allclose_accepts_small_and_rejects_real_differences():
    a = _instances()
    b = Instances(a.image_size, **{k: v.clone() for k, v in a.get_fields().items()})
    b.scores = b.scores * (1 + 1e-7)
    assert_instances_allclose(a, b)
    b.classes = torch.tensor([0, 1, 2, 2])
    with pytest.raises(AssertionError, match="classes"):
        assert_instances_allclose(a, b, msg="check")
    with pytest.raises(AssertionError, match="image_size"):
        assert_instances_allclose(a, Instances((30, 41), **a.get_fields()))
    with pytest.raises(AssertionError, match="fields"):
        assert_instances_allclose(a, a[:0].__class__(a.image_size, scores=a.scores))


def test_convert_scripted_instances_reads_the_set_private_fields():
    class Scripted:
        image_size = (5, 6)
        _field_names = ["scores", "pred_boxes"]
        _scores = torch.ones(2)
        _pred_boxes = None

    plain = convert_scripted_instances(Scripted())
    assert plain.image_size == (5, 6) and list(plain.get_fields()) == ["scores"]
    with pytest.raises(TypeError, match="Instances-like"):
        convert_scripted_instances(torch.ones(2))


def test_reload_script_model_round_trips_a_scripted_function():
    scripted = torch.jit.script(torch.nn.Linear(2, 3))
    x = torch.randn(4, 2)
    assert torch.equal(reload_script_model(scripted)(x), scripted(x))


def test_sample_coco_image_fails_clearly_without_coco_on_disk():
    with pytest.raises(FileNotFoundError, match="never downloaded|on disk"):
        get_sample_coco_image()


def test_get_model_no_weights_rejects_names_outside_the_model_zoo():
    with pytest.raises(ValueError, match="unknown model"):
        get_model_no_weights("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
