"""Checkpoint loading and saving (project.checkpoint) on small modules with Detectron2 names.

Every file is written by the test into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import struct
import urllib.error
from typing import Dict

import numpy as np
import pytest
import torch
import torchvision
from iopath.common.file_io import HTTPURLHandler
from torch import nn

from project.checkpoint import (
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointSaveError,
    DetectionCheckpointer,
    NonFiniteWeightsError,
    UnsafeCheckpointError,
    align_and_update_state_dicts,
    get_local_checkpoint_path,
    load_pickle,
)
from project.checkpoint.load_report import group_name
from project.layers import Conv2d, FrozenBatchNorm2d
from project.utils.file_io import detectron2_url

# --------------------------------------------------------------------------- a tiny Mask R-CNN


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1) -> Conv2d:
    return Conv2d(in_channels, out_channels, kernel_size, bias=False, norm=FrozenBatchNorm2d(out_channels))


class _Bottleneck(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__()
        self.shortcut = _conv_bn(in_channels, out_channels)
        self.conv1 = _conv_bn(in_channels, mid_channels)
        self.conv2 = _conv_bn(mid_channels, mid_channels, 3)
        self.conv3 = _conv_bn(mid_channels, out_channels)


class _ResNet(nn.Module):
    """Stem + res2..res5 with one bottleneck each; ``width=64`` has the shapes of
    ``torchvision.models.resnet.ResNet(Bottleneck, [1, 1, 1, 1])``."""

    def __init__(self, width: int):
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv1 = _conv_bn(3, width, 7)
        in_channels = width
        for stage in range(2, 6):
            mid = width * 2 ** (stage - 2)
            self.add_module(f"res{stage}", nn.Sequential(_Bottleneck(in_channels, mid, 4 * mid)))
            in_channels = 4 * mid


def _module(**children: nn.Module) -> nn.Module:
    parent = nn.Module()
    for name, child in children.items():
        parent.add_module(name, child)
    return parent


def tiny_mask_rcnn(num_classes: int = 80, width: int = 4) -> nn.Module:
    """Module tree whose state-dict keys are those of Detectron2's R-FPN Mask R-CNN."""
    fpn_channels, hidden = 8, 16
    return _module(
        backbone=_module(
            bottom_up=_ResNet(width),
            fpn_lateral2=nn.Conv2d(4 * width, fpn_channels, 1),
            fpn_output2=nn.Conv2d(fpn_channels, fpn_channels, 3),
        ),
        proposal_generator=_module(
            rpn_head=_module(
                conv=nn.Conv2d(fpn_channels, fpn_channels, 3),
                objectness_logits=nn.Conv2d(fpn_channels, 3, 1),
                anchor_deltas=nn.Conv2d(fpn_channels, 12, 1),
            )
        ),
        roi_heads=_module(
            box_head=_module(fc1=nn.Linear(fpn_channels * 4, hidden), fc2=nn.Linear(hidden, hidden)),
            box_predictor=_module(
                cls_score=nn.Linear(hidden, num_classes + 1),
                bbox_pred=nn.Linear(hidden, 4 * num_classes),
            ),
            mask_head=_module(
                mask_fcn1=nn.Conv2d(fpn_channels, fpn_channels, 3),
                deconv=nn.ConvTranspose2d(fpn_channels, fpn_channels, 2, 2),
                predictor=nn.Conv2d(fpn_channels, num_classes, 1),
            ),
        ),
    )


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with every parameter and buffer set to distinct random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model


def snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def as_numpy(state_dict: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in state_dict.items()}


def write_pickle(path, obj, protocol: int = pickle.DEFAULT_PROTOCOL) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def caffe2_backbone_weights(model: nn.Module) -> Dict[str, np.ndarray]:
    """The ResNet part of ``model`` under MSRA / Caffe2 ImageNet blob names (affine BN only)."""
    state = as_numpy(model.state_dict())
    resnet = "backbone.bottom_up"
    weights = {
        "conv1_w": state[f"{resnet}.stem.conv1.weight"],
        "res_conv1_bn_s": state[f"{resnet}.stem.conv1.norm.weight"],
        "res_conv1_bn_b": state[f"{resnet}.stem.conv1.norm.bias"],
    }
    branches = {"2a": "conv1", "2b": "conv2", "2c": "conv3", "1": "shortcut"}
    for stage in range(2, 6):
        for branch, conv in branches.items():
            prefix, module = f"res{stage}_0_branch{branch}", f"{resnet}.res{stage}.0.{conv}"
            weights[f"{prefix}_w"] = state[f"{module}.weight"]
            weights[f"{prefix}_bn_s"] = state[f"{module}.norm.weight"]
            weights[f"{prefix}_bn_b"] = state[f"{module}.norm.bias"]
    return weights


class Py2StylePickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), as Detectron's Python 2 pickles did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_style_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    # Python 2 era files name numpy's pickle helpers under numpy.core.
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")


def assert_tensors_equal(model: nn.Module, expected: Dict[str, torch.Tensor], keys) -> None:
    state = model.state_dict()
    for key in keys:
        torch.testing.assert_close(state[key], expected[key], rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------- Detectron2 .pkl


def test_detectron2_pkl_loads_all_values_without_reordering(tmp_path):
    source = randomized(tiny_mask_rcnn())
    path = write_pickle(
        tmp_path / "model_final.pkl",
        {"model": as_numpy(source.state_dict()), "__author__": "Detectron2 Model Zoo"},
    )
    target = tiny_mask_rcnn()
    checkpointer = DetectionCheckpointer(target)

    extra = checkpointer.load(path)

    expected = source.state_dict()
    assert_tensors_equal(target, expected, expected)  # cls_score rows included: no reordering
    assert all(value.dtype == torch.float32 for value in target.state_dict().values())
    report = checkpointer.last_load_report
    assert sorted(report.loaded) == sorted(expected)
    assert report.missing == report.unexpected == report.incorrect_shapes == []
    assert extra["__author__"] == "Detectron2 Model Zoo"


def test_detectron2_pkl_with_matching_heuristics_attaches_relative_names(tmp_path):
    source = randomized(tiny_mask_rcnn())
    resnet_prefix = "backbone.bottom_up."
    relative = {
        key[len(resnet_prefix) :]: value
        for key, value in as_numpy(source.state_dict()).items()
        if key.startswith(resnet_prefix)
    }
    path = write_pickle(
        tmp_path / "R-50.pkl",
        {"model": relative, "__author__": "torchvision", "matching_heuristics": True},
    )
    target = tiny_mask_rcnn()
    before = snapshot(target)
    checkpointer = DetectionCheckpointer(target)

    checkpointer.load(path)

    resnet_keys = [key for key in before if key.startswith(resnet_prefix)]
    assert_tensors_equal(target, source.state_dict(), resnet_keys)
    head_keys = [key for key in before if not key.startswith(resnet_prefix)]
    assert_tensors_equal(target, before, head_keys)
    assert sorted(checkpointer.last_load_report.missing) == sorted(head_keys)


# --------------------------------------------------------------------------- safe unpickling


_PAYLOAD_CALLS = []


def _record_payload_call():
    _PAYLOAD_CALLS.append("ran")


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (_record_payload_call, ())


@pytest.mark.parametrize(
    "payload, global_name",
    [(_RunsCodeWhenUnpickled(), "_record_payload_call"), (os.system, "system")],
    ids=["custom-callable", "os.system"],
)
def test_pkl_with_forbidden_global_is_refused_without_running_it(tmp_path, payload, global_name):
    path = write_pickle(
        tmp_path / "evil.pkl",
        {"model": {"w": np.zeros(2, np.float32)}, "__author__": "x", "payload": payload},
    )
    _PAYLOAD_CALLS.clear()

    with pytest.raises(UnsafeCheckpointError, match=global_name) as raised:
        DetectionCheckpointer(tiny_mask_rcnn()).load(path)

    assert isinstance(raised.value, pickle.UnpicklingError)
    assert path in str(raised.value)
    assert _PAYLOAD_CALLS == []


def test_the_refused_payload_would_run_under_plain_pickle(tmp_path):
    """Control for the test above: the payload is live, so refusing it matters."""
    path = write_pickle(tmp_path / "evil.pkl", {"payload": _RunsCodeWhenUnpickled()})
    _PAYLOAD_CALLS.clear()
    with open(path, "rb") as f:
        pickle.load(f)
    assert _PAYLOAD_CALLS == ["ran"]


def test_pth_with_custom_object_is_refused_by_weights_only_load(tmp_path):
    path = str(tmp_path / "evil.pth")
    torch.save({"model": {}, "payload": _RunsCodeWhenUnpickled()}, path)
    _PAYLOAD_CALLS.clear()

    with pytest.raises(UnsafeCheckpointError) as raised:
        DetectionCheckpointer(tiny_mask_rcnn()).load(path)

    assert path in str(raised.value)
    assert _PAYLOAD_CALLS == []


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_unpickler_reads_numpy_arrays_and_containers_of_every_protocol(tmp_path, protocol):
    content = {
        "arrays": [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=np.int64)],
        "scalar": np.float32(2.5),
        "nested": ({"a": 1}, {1, 2}, frozenset({3}), b"bytes", "text"),
    }
    loaded = load_pickle(write_pickle(tmp_path / "plain.pkl", content, protocol=protocol))
    np.testing.assert_array_equal(loaded["arrays"][0], content["arrays"][0])
    assert loaded["arrays"][0].dtype == np.float32
    np.testing.assert_array_equal(loaded["arrays"][1], content["arrays"][1])
    assert loaded["scalar"] == content["scalar"] and loaded["nested"] == content["nested"]


def test_python2_era_caffe2_pickle_needs_and_gets_latin1(tmp_path):
    source = randomized(tiny_mask_rcnn())
    path = tmp_path / "R-101.pkl"
    path.write_bytes(py2_style_pickle(caffe2_backbone_weights(source)))
    with pytest.raises(UnicodeDecodeError):  # what a default pickle.load would do
        pickle.loads(path.read_bytes())

    target = tiny_mask_rcnn()
    DetectionCheckpointer(target).load(str(path))

    assert_tensors_equal(target, source.state_dict(), ["backbone.bottom_up.res3.0.conv2.weight"])


# --------------------------------------------------------------------------- Caffe2 / MSRA


@pytest.mark.parametrize("layout", ["flat", "blobs"])
def test_msra_caffe2_names_convert_and_load(tmp_path, caplog, layout):
    source = randomized(tiny_mask_rcnn())
    weights = caffe2_backbone_weights(source)
    weights.update(fc1000_w=np.ones((10, 4), np.float32), fc1000_b=np.ones(10, np.float32))
    if layout == "blobs":
        weights["res2_0_branch2a_w_momentum"] = np.ones(1, np.float32)
        weights = {"blobs": weights}
    path = write_pickle(tmp_path / "R-101.pkl", weights, protocol=2)
    target = tiny_mask_rcnn()
    before = snapshot(target)

    with caplog.at_level(logging.INFO):
        DetectionCheckpointer(target).load(path)

    expected = source.state_dict()
    affine_keys = [
        key
        for key in expected
        if key.startswith("backbone.bottom_up.") and not key.endswith(("running_mean", "running_var"))
    ]
    assert_tensors_equal(target, expected, affine_keys)
    # Caffe2 affine BN: statistics keep FrozenBN's defaults, so the layer scales by exactly weight.
    statistics = [key for key in expected if key.endswith(("running_mean", "running_var"))]
    assert_tensors_equal(target, before, statistics)
    norm = target.backbone.bottom_up.res4[0].conv2.norm
    scale, _ = norm.scale_and_shift()
    torch.testing.assert_close(scale, norm.weight, rtol=0, atol=1e-7)
    assert "fc1000_b, fc1000_w" in caplog.text


def test_detectron1_detection_pkl_moves_background_class(tmp_path):
    num_classes, hidden = 3, 16
    rng = np.random.default_rng(0)

    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    blobs = {
        "conv_rpn_fpn2_w": array(8, 8, 3, 3),
        "fpn_inner_res2_0_sum_lateral_w": array(8, 16, 1, 1),
        "fc6_w": array(hidden, 32),
        "cls_score_w": array(num_classes + 1, hidden),
        "cls_score_b": array(num_classes + 1),
        "bbox_pred_w": array(4 * (num_classes + 1), hidden),
        "mask_fcn_logits_w": array(num_classes + 1, 8, 1, 1),
        "_[mask]_fcn1_w": array(8, 8, 3, 3),
    }
    path = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs, "cfg": "yaml text"})
    target = tiny_mask_rcnn(num_classes=num_classes)

    DetectionCheckpointer(target).load(path)

    state = {key: value.numpy() for key, value in target.state_dict().items()}
    predictor = "roi_heads.box_predictor"
    # Caffe2 has background at row 0; Detectron2 wants it last and has no background deltas.
    np.testing.assert_array_equal(state[f"{predictor}.cls_score.weight"][-1], blobs["cls_score_w"][0])
    np.testing.assert_array_equal(state[f"{predictor}.cls_score.weight"][:-1], blobs["cls_score_w"][1:])
    np.testing.assert_array_equal(state[f"{predictor}.cls_score.bias"][-1], blobs["cls_score_b"][0])
    np.testing.assert_array_equal(state[f"{predictor}.bbox_pred.weight"], blobs["bbox_pred_w"][4:])
    np.testing.assert_array_equal(state["roi_heads.mask_head.predictor.weight"], blobs["mask_fcn_logits_w"][1:])
    np.testing.assert_array_equal(state["roi_heads.mask_head.mask_fcn1.weight"], blobs["_[mask]_fcn1_w"])
    np.testing.assert_array_equal(state["proposal_generator.rpn_head.conv.weight"], blobs["conv_rpn_fpn2_w"])
    np.testing.assert_array_equal(state["backbone.fpn_lateral2.weight"], blobs["fpn_inner_res2_0_sum_lateral_w"])
    np.testing.assert_array_equal(state["roi_heads.box_head.fc1.weight"], blobs["fc6_w"])


# --------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("saved_from_ddp", [False, True])
def test_torchvision_resnet_state_dict_loads(tmp_path, caplog, saved_from_ddp):
    torchvision_resnet = randomized(
        torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1])
    )
    state_dict = torchvision_resnet.state_dict()
    if saved_from_ddp:
        state_dict = {f"module.{key}": value for key, value in state_dict.items()}
    path = str(tmp_path / "resnet.pth")
    torch.save(state_dict, path)
    target = tiny_mask_rcnn(width=64)
    checkpointer = DetectionCheckpointer(target)

    with caplog.at_level(logging.INFO):
        checkpointer.load(path)

    resnet = target.backbone.bottom_up
    pairs = [
        (resnet.stem.conv1.weight, torchvision_resnet.conv1.weight),
        (resnet.stem.conv1.norm.running_var, torchvision_resnet.bn1.running_var),
        (resnet.res2[0].conv1.norm.running_mean, torchvision_resnet.layer1[0].bn1.running_mean),
        (resnet.res3[0].conv2.weight, torchvision_resnet.layer2[0].conv2.weight),
        (resnet.res4[0].conv3.norm.weight, torchvision_resnet.layer3[0].bn3.weight),
        (resnet.res5[0].shortcut.weight, torchvision_resnet.layer4[0].downsample[0].weight),
        (resnet.res5[0].shortcut.norm.bias, torchvision_resnet.layer4[0].downsample[1].bias),
    ]
    for loaded, original in pairs:
        torch.testing.assert_close(loaded, original, rtol=0, atol=0)
    report = checkpointer.last_load_report
    resnet_keys = [key for key in target.state_dict() if key.startswith("backbone.bottom_up.")]
    assert set(resnet_keys) <= set(report.loaded)
    assert report.unexpected == []  # fc.* and num_batches_tracked are dropped, and logged
    assert "fc.bias, fc.weight" in caplog.text


# --------------------------------------------------------------------------- own / Detectron2 .pth


def test_save_then_resume_restores_model_optimizer_scheduler_and_iteration(tmp_path):
    def build():
        model = tiny_mask_rcnn()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
        return model, optimizer, scheduler

    model, optimizer, scheduler = build()
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    scheduler.step()
    DetectionCheckpointer(model, str(tmp_path), optimizer=optimizer, scheduler=scheduler).save(
        "model_0000009", iteration=9
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"

    model2, optimizer2, scheduler2 = build()
    checkpointer = DetectionCheckpointer(model2, str(tmp_path), optimizer=optimizer2, scheduler=scheduler2)
    extra = checkpointer.resume_or_load("unused.pkl", resume=True)

    assert extra == {"iteration": 9}
    assert_tensors_equal(model2, model.state_dict(), model.state_dict())
    first = next(iter(model.parameters()))
    torch.testing.assert_close(
        optimizer2.state_dict()["state"][0]["momentum_buffer"],
        optimizer.state[first]["momentum_buffer"],
    )
    assert scheduler2.last_epoch == scheduler.last_epoch == 1


def test_matching_heuristics_query_on_a_pth_path(tmp_path):
    source = randomized(tiny_mask_rcnn())
    relative = {
        key[len("roi_heads.") :]: value for key, value in source.state_dict().items() if key.startswith("roi_heads.")
    }
    path = str(tmp_path / "heads.pth")
    torch.save({"model": relative}, path)
    target = tiny_mask_rcnn()

    DetectionCheckpointer(target).load(path + "?matching_heuristics=True")

    assert_tensors_equal(target, source.state_dict(), ["roi_heads.box_predictor.cls_score.weight"])
    with pytest.raises(ValueError, match="unsupported query"):
        DetectionCheckpointer(target).load(path + "?strict=True")


# --------------------------------------------------------------------------- class-count mismatch


def test_class_count_mismatch_keeps_fresh_heads_and_warns(tmp_path, caplog):
    coco = randomized(tiny_mask_rcnn(num_classes=80))
    path = write_pickle(tmp_path / "coco.pkl", {"model": as_numpy(coco.state_dict()), "__author__": "Detectron2"})
    target = tiny_mask_rcnn(num_classes=1)
    fresh = snapshot(target)
    checkpointer = DetectionCheckpointer(target)

    with caplog.at_level(logging.WARNING):
        checkpointer.load(path)

    heads = {
        "roi_heads.box_predictor.cls_score.weight": ((81, 16), (2, 16)),
        "roi_heads.box_predictor.cls_score.bias": ((81,), (2,)),
        "roi_heads.box_predictor.bbox_pred.weight": ((320, 16), (4, 16)),
        "roi_heads.box_predictor.bbox_pred.bias": ((320,), (4,)),
        "roi_heads.mask_head.predictor.weight": ((80, 8, 1, 1), (1, 8, 1, 1)),
        "roi_heads.mask_head.predictor.bias": ((80,), (1,)),
    }
    assert_tensors_equal(target, fresh, heads)
    assert_tensors_equal(target, coco.state_dict(), [key for key in fresh if key not in heads])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for key, (checkpoint_shape, model_shape) in heads.items():
        assert any(
            key in w and str(checkpoint_shape) in w and str(model_shape) in w and "classes" in w for w in warnings
        ), key
    assert sorted(k for k, _, _ in checkpointer.last_load_report.incorrect_shapes) == sorted(heads)


# --------------------------------------------------------------------------- bad input


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / "does_not_exist.pth")
    with pytest.raises(FileNotFoundError, match="does_not_exist.pth"):
        DetectionCheckpointer(tiny_mask_rcnn()).load(path)


def _valid_pth(path) -> bytes:
    torch.save({"model": tiny_mask_rcnn().state_dict()}, path)
    return path.read_bytes()


def _valid_pkl(path) -> bytes:
    write_pickle(path, {"model": as_numpy(tiny_mask_rcnn().state_dict()), "__author__": "x"})
    return path.read_bytes()


@pytest.mark.parametrize(
    "name, corrupt",
    [
        ("truncated.pth", lambda path: _valid_pth(path)[:1000]),
        ("garbage.pth", lambda path: b"this is not a checkpoint " * 40),
        ("empty.pth", lambda path: b""),
        ("truncated.pkl", lambda path: _valid_pkl(path)[:1000]),
        ("garbage.pkl", lambda path: b"\x00\x01garbage" * 40),
        ("list.pkl", lambda path: pickle.dumps([1, 2, 3])),
        ("string_weights.pkl", lambda path: pickle.dumps({"model": {"w": "x"}, "__author__": "x"})),
    ],
)
def test_corrupt_file_error_names_file_and_expectation(tmp_path, name, corrupt):
    path = tmp_path / name
    path.write_bytes(corrupt(path))
    with pytest.raises(CheckpointFormatError, match="expected") as raised:
        DetectionCheckpointer(tiny_mask_rcnn()).load(str(path))
    assert str(path) in str(raised.value)


def test_checkpoint_of_another_architecture_is_refused_before_loading(tmp_path):
    path = write_pickle(
        tmp_path / "bert.pkl",
        {
            "model": {"encoder.layer.0.attention.weight": np.ones((4, 4), np.float32)},
            "__author__": "x",
        },
    )
    target = tiny_mask_rcnn()
    with pytest.raises(CheckpointMismatchError) as raised:
        DetectionCheckpointer(target).load(path)
    message = str(raised.value)
    assert path in message and "encoder.layer.0.attention.weight" in message
    assert "backbone.bottom_up" in message  # sample model keys


def test_backbone_shape_mismatch_is_refused_and_nothing_is_loaded(tmp_path):
    wider = randomized(tiny_mask_rcnn(width=8))
    path = write_pickle(tmp_path / "wide.pkl", {"model": as_numpy(wider.state_dict()), "__author__": "x"})
    target = tiny_mask_rcnn(width=4)
    before = snapshot(target)

    with pytest.raises(CheckpointMismatchError) as raised:
        DetectionCheckpointer(target).load(path)

    message = str(raised.value)
    assert path in message
    assert "backbone.bottom_up.stem.conv1.weight: (8, 3, 7, 7) in checkpoint vs (4, 3, 7, 7)" in message
    assert_tensors_equal(target, before, before)


# --------------------------------------------------------------------------- suffix matching


def test_suffix_matching_prefers_the_longest_whole_component_suffix():
    model_keys = {
        "backbone.stem.conv1.weight": 0,
        "backbone.res2.0.conv1.weight": 0,
        "fc1.weight": 0,
    }
    checkpoint = {"conv1.weight": "stem", "res2.0.conv1.weight": "res2", "1.weight": "no"}
    aligned = align_and_update_state_dicts(model_keys, checkpoint, c2_conversion=False)
    assert aligned == {
        "backbone.stem.conv1.weight": "stem",
        "backbone.res2.0.conv1.weight": "res2",
        "1.weight": "no",  # "1.weight" is not a whole-component suffix of "fc1.weight"
    }


def test_suffix_matching_converts_caffe2_names_by_default():
    model_keys = {"backbone.bottom_up.res2.0.conv1.weight": 0, "backbone.bottom_up.stem.conv1.norm.bias": 0}
    checkpoint = {"res2_0_branch2a_w": "conv", "res_conv1_bn_b": "norm"}
    assert align_and_update_state_dicts(model_keys, checkpoint) == {
        "backbone.bottom_up.res2.0.conv1.weight": "conv",
        "backbone.bottom_up.stem.conv1.norm.bias": "norm",
    }


def test_ambiguous_suffix_match_names_both_model_keys():
    model_keys = {"a.conv.weight": 0, "b.conv.weight": 0}
    with pytest.raises(CheckpointMismatchError, match="a.conv.weight.*b.conv.weight"):
        align_and_update_state_dicts(model_keys, {"conv.weight": 1}, c2_conversion=False, source="ckpt.pkl")


def test_load_report_groups_keys_by_module(tmp_path):
    source = randomized(tiny_mask_rcnn())
    path = write_pickle(tmp_path / "R-101.pkl", caffe2_backbone_weights(source))
    checkpointer = DetectionCheckpointer(tiny_mask_rcnn())
    checkpointer.load(path)

    rows = checkpointer.last_load_report.rows()
    assert ("loaded", "backbone.bottom_up.res2", 12, "bias, weight") in rows
    assert (
        "missing (kept init)",
        "backbone.bottom_up.res2",
        8,
        "running_mean, running_var",
    ) in rows
    assert ("missing (kept init)", "roi_heads.box_predictor.cls_score", 2, "bias, weight") in rows
    assert path in checkpointer.last_load_report.format_table()
    assert group_name("pixel_mean") == "pixel_mean"


# --------------------------------------------------------------------------- paths and URLs


MSRA_R101 = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
MSRA_R101_URL = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-101.pkl"


def test_detectron2_prefix_resolves_to_the_model_zoo_url():
    assert detectron2_url(MSRA_R101) == MSRA_R101_URL
    assert detectron2_url("/local/R-101.pkl") == "/local/R-101.pkl"


def test_detectron2_path_is_fetched_through_the_http_handler(tmp_path, monkeypatch):
    source = randomized(tiny_mask_rcnn())
    cached = write_pickle(tmp_path / "R-101.pkl", caffe2_backbone_weights(source))
    requested = []

    def fake_download(self, path, **kwargs):
        requested.append(path)
        return cached

    monkeypatch.setattr(HTTPURLHandler, "_get_local_path", fake_download)
    target = tiny_mask_rcnn()
    DetectionCheckpointer(target).load(MSRA_R101)

    assert requested == [MSRA_R101_URL]
    assert_tensors_equal(target, source.state_dict(), ["backbone.bottom_up.stem.conv1.weight"])


def test_download_failure_names_url_and_manual_alternative(monkeypatch):
    def offline(self, path, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HTTPURLHandler, "_get_local_path", offline)
    with pytest.raises(CheckpointDownloadError) as raised:
        get_local_checkpoint_path(MSRA_R101)
    message = str(raised.value)
    assert MSRA_R101_URL in message and "local path" in message


# --------------------------------------------------------------------------- atomic saving


def test_failed_save_leaves_no_partial_file_and_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = randomized(tiny_mask_rcnn())
    checkpointer = DetectionCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    good_bytes = (tmp_path / "model_0000001.pth").read_bytes()

    def disk_full_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_midway)
    for name in ("model_0000002", "model_0000001"):  # a new file, and overwriting the old one
        with pytest.raises(CheckpointSaveError, match="No space left") as raised:
            checkpointer.save(name)
        assert isinstance(raised.value, OSError)
        assert os.path.join(str(tmp_path), f"{name}.pth") in str(raised.value)

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "model_0000001.pth").read_bytes() == good_bytes
    assert checkpointer.get_checkpoint_file() == os.path.join(str(tmp_path), "model_0000001.pth")


def test_pkl_with_an_object_array_names_the_weight_and_its_dtype(tmp_path):
    path = write_pickle(
        tmp_path / "objects.pkl",
        {"model": {"backbone.fpn_lateral2.bias": np.array([1, "a"], dtype=object)}, "__author__": "x"},
    )
    with pytest.raises(CheckpointFormatError) as raised:
        DetectionCheckpointer(tiny_mask_rcnn()).load(path)
    message = str(raised.value)
    assert path in message and "'backbone.fpn_lateral2.bias'" in message and "object" in message


# --------------------------------------------------------------------------- non-finite weights

NAN_KEY = "roi_heads.box_head.fc1.weight"
INF_KEY = "backbone.bottom_up.stem.conv1.norm.running_var"


def _poison(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        model.state_dict()[NAN_KEY][0, 0] = float("nan")
        model.state_dict()[INF_KEY][1] = float("inf")
    return model


def test_saving_non_finite_weights_is_refused_naming_the_tensors(tmp_path):
    model = randomized(tiny_mask_rcnn())
    checkpointer = DetectionCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    _poison(model)

    with pytest.raises(NonFiniteWeightsError) as raised:
        checkpointer.save("model_final")

    message = str(raised.value)
    assert NAN_KEY in message and INF_KEY in message and "SOLVER.BASE_LR" in message and "\n" not in message
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert checkpointer.get_checkpoint_file() == os.path.join(str(tmp_path), "model_0000001.pth")


def test_loading_non_finite_weights_is_refused_and_loads_nothing(tmp_path):
    path = str(tmp_path / "diverged.pth")
    torch.save({"model": _poison(randomized(tiny_mask_rcnn())).state_dict()}, path)
    target = tiny_mask_rcnn()
    before = snapshot(target)

    with pytest.raises(NonFiniteWeightsError) as raised:
        DetectionCheckpointer(target).load(path)

    message = str(raised.value)
    assert path in message and NAN_KEY in message and INF_KEY in message and "\n" not in message
    assert_tensors_equal(target, before, before)


def test_non_finite_values_in_tensors_that_are_not_loaded_do_not_matter(tmp_path):
    source = randomized(tiny_mask_rcnn(num_classes=80))
    with torch.no_grad():
        source.state_dict()["roi_heads.box_predictor.cls_score.weight"].fill_(float("nan"))  # other class count
    path = str(tmp_path / "coco.pth")
    torch.save({"model": {**source.state_dict(), "unused.weight": torch.full((2,), float("inf"))}}, path)
    target = tiny_mask_rcnn(num_classes=1)

    DetectionCheckpointer(target).load(path)

    assert_tensors_equal(target, source.state_dict(), [NAN_KEY])
    assert all(torch.isfinite(value).all() for value in target.state_dict().values())


# --------------------------------------------------------------------------- last_checkpoint


def _periodic_checkpoints(directory, iterations) -> Dict[int, Dict[str, torch.Tensor]]:
    """Save one checkpoint per iteration, each a second newer than the previous one."""
    states = {}
    for age, iteration in enumerate(iterations):
        model = randomized(tiny_mask_rcnn(), seed=iteration)
        DetectionCheckpointer(model, str(directory)).save(f"model_{iteration:07d}", iteration=iteration)
        path = directory / f"model_{iteration:07d}.pth"
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
        states[iteration] = snapshot(model)
    return states


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"\xff\xfemodel_0000004.pth", "UTF-8"),
        (b"model_0000999.pth", "'model_0000999.pth'"),
        (b"inference", "'inference'"),
    ],
)
def test_unusable_last_checkpoint_falls_back_to_the_newest_complete_checkpoint(tmp_path, caplog, content, problem):
    states = _periodic_checkpoints(tmp_path, [1, 4, 2])  # model_0000002.pth is the newest file
    (tmp_path / "model_0000007.pth").write_bytes((tmp_path / "model_0000004.pth").read_bytes()[:2000])  # killed copy
    os.utime(tmp_path / "model_0000007.pth", (2_000_000, 2_000_000))
    (tmp_path / "inference").mkdir()
    (tmp_path / "last_checkpoint").write_bytes(content)
    target = tiny_mask_rcnn()

    # Attached to the package's logger: a run's setup_logger stops project records from propagating.
    package_logger = logging.getLogger("project.checkpoint")
    package_logger.addHandler(caplog.handler)
    try:
        extra = DetectionCheckpointer(target, str(tmp_path)).resume_or_load("", resume=True)
    finally:
        package_logger.removeHandler(caplog.handler)

    assert extra["iteration"] == 2
    assert_tensors_equal(target, states[2], states[2])
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(tmp_path / "last_checkpoint") in warning and problem in warning and "model_0000002.pth" in warning


def test_unusable_last_checkpoint_without_a_complete_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / "model_0000003.pth").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe")

    with pytest.raises(CheckpointFormatError) as raised:
        DetectionCheckpointer(tiny_mask_rcnn(), str(tmp_path)).resume_or_load("", resume=True)

    message = str(raised.value)
    assert str(tmp_path / "last_checkpoint") in message and "UTF-8" in message and "resume=false" in message
    assert "\n" not in message
