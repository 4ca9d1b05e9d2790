"""``Instances``: fields, indexing, concatenation and device/dtype moves."""

import pytest
import torch

from project.structures import Boxes, Instances

IMAGE_SIZE = (30, 40)


def make_instances() -> Instances:
    """Four instances whose fields are easy to tell apart: row i has score (i+1)/10, name 'abcd'[i]."""
    inst = Instances(IMAGE_SIZE)
    inst.scores = torch.tensor([0.1, 0.2, 0.3, 0.4])
    inst.names = ["a", "b", "c", "d"]
    inst.boxes = Boxes(torch.tensor([[float(i), 0.0, i + 5.0, 5.0] for i in range(4)]))
    return inst


def selected(inst: Instances):
    """(scores, names, first box coordinate) of an Instances built by ``make_instances``."""
    return (
        [round(s, 4) for s in inst.scores.tolist()],
        inst.names,
        inst.boxes.tensor[:, 0].tolist(),
    )


def test_set_and_get_fields():
    inst = Instances(IMAGE_SIZE, scores=torch.tensor([0.5, 0.6]))
    inst.set("labels", torch.tensor([3, 7]))
    inst.names = ["x", "y"]
    assert inst.get("labels").tolist() == [3, 7]
    assert inst.labels.tolist() == [3, 7]
    assert inst.names == ["x", "y"]
    assert inst.get("scores").tolist() == pytest.approx([0.5, 0.6])
    assert len(inst) == 2
    assert inst.image_size == IMAGE_SIZE


def test_empty_instances_have_length_zero():
    assert len(Instances(IMAGE_SIZE)) == 0


@pytest.mark.parametrize("value", [torch.zeros(3), ["a", "b", "c"], Boxes(torch.zeros(3, 4))])
def test_field_of_different_length_raises_value_error(value):
    inst = Instances(IMAGE_SIZE, scores=torch.zeros(4))
    with pytest.raises(ValueError):
        inst.other = value
    with pytest.raises(ValueError):
        inst.set("other", value)
    assert not inst.has("other")


def test_constructor_rejects_fields_of_different_lengths():
    with pytest.raises(ValueError):
        Instances(IMAGE_SIZE, scores=torch.zeros(4), labels=torch.zeros(5))


def test_missing_field_raises_attribute_error_so_hasattr_is_false():
    inst = make_instances()
    with pytest.raises(AttributeError):
        _ = inst.pred_masks
    assert not hasattr(inst, "pred_masks")
    assert getattr(inst, "pred_masks", None) is None
    assert hasattr(inst, "scores")


def test_has_remove_and_get_fields():
    inst = make_instances()
    assert list(inst.get_fields()) == ["scores", "names", "boxes"]
    assert inst.has("names") and not inst.has("labels")
    inst.remove("names")
    assert not inst.has("names")
    assert not hasattr(inst, "names")
    assert list(inst.get_fields()) == ["scores", "boxes"]
    assert len(inst) == 4


@pytest.mark.parametrize(
    "index, expected",
    [
        (0, ([0.1], ["a"], [0.0])),
        (2, ([0.3], ["c"], [2.0])),
        (3, ([0.4], ["d"], [3.0])),
        (-1, ([0.4], ["d"], [3.0])),
        (-2, ([0.3], ["c"], [2.0])),
        (-4, ([0.1], ["a"], [0.0])),
    ],
)
def test_int_index_selects_one_instance_in_every_field(index, expected):
    out = make_instances()[index]
    assert len(out) == 1
    assert selected(out) == expected
    assert out.image_size == IMAGE_SIZE


@pytest.mark.parametrize("index", [4, 10, -5])
def test_out_of_range_int_index_raises_index_error(index):
    with pytest.raises(IndexError):
        _ = make_instances()[index]


def test_slice_selects_the_same_rows_in_every_field():
    assert selected(make_instances()[1:3]) == ([0.2, 0.3], ["b", "c"], [1.0, 2.0])
    assert selected(make_instances()[::2]) == ([0.1, 0.3], ["a", "c"], [0.0, 2.0])


def test_bool_tensor_index_keeps_true_rows_in_every_field():
    out = make_instances()[torch.tensor([True, False, False, True])]
    assert selected(out) == ([0.1, 0.4], ["a", "d"], [0.0, 3.0])


def test_all_false_bool_index_gives_empty_instances():
    out = make_instances()[torch.zeros(4, dtype=torch.bool)]
    assert len(out) == 0
    assert out.names == []


def test_long_tensor_index_selects_and_reorders_every_field():
    out = make_instances()[torch.tensor([3, 0, 0])]
    assert selected(out) == ([0.4, 0.1, 0.1], ["d", "a", "a"], [3.0, 0.0, 0.0])


def test_cat_keeps_order_of_tensors_lists_and_boxes():
    first = make_instances()[:2]
    second = make_instances()[2:]
    out = Instances.cat([second, first])
    assert selected(out) == ([0.3, 0.4, 0.1, 0.2], ["c", "d", "a", "b"], [2.0, 3.0, 0.0, 1.0])
    assert isinstance(out.boxes, Boxes)
    assert out.image_size == IMAGE_SIZE


def test_cat_rejects_different_image_sizes():
    a = Instances((10, 20), scores=torch.zeros(1))
    b = Instances((20, 10), scores=torch.zeros(1))
    with pytest.raises(ValueError):
        Instances.cat([a, b])


def test_to_dtype_converts_tensors_and_keeps_other_fields():
    inst = make_instances()
    inst.labels = torch.tensor([1, 2, 3, 4])
    out = inst.to(torch.float64)
    assert out.scores.dtype == torch.float64
    assert out.labels.dtype == torch.float64
    assert out.names == ["a", "b", "c", "d"]
    assert out.image_size == IMAGE_SIZE
    assert inst.scores.dtype == torch.float32  # the original is untouched


def test_to_device_keeps_all_fields():
    out = make_instances().to("cpu")
    assert selected(out) == ([0.1, 0.2, 0.3, 0.4], ["a", "b", "c", "d"], [0.0, 1.0, 2.0, 3.0])
    assert out.scores.device.type == "cpu"


def test_iterating_raises():
    with pytest.raises(NotImplementedError):
        iter(make_instances())
