"""RoIAlign over channel groups equals torchvision's single call bit for bit; the pooler reads each box
from the pyramid level that fits it."""

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from project.layers import roi_align
from project.modeling.poolers import ROIPooler, assign_boxes_to_levels
from project.structures import Boxes


def _random_rois(num: int, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    x0y0 = torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
    wh = torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.5, height * 0.5]) + 0.5
    index = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([index, x0y0, x0y0 + wh], dim=1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("sampling_ratio,aligned", [(0, True), (2, False)])
def test_channel_groups_match_torchvision_forward_and_backward(channels_last, groups, sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 24, 32, generator=generator)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    rois = _random_rois(40, 2, 24 * 4, 32 * 4, generator)
    grad_output = torch.randn(40, 8, 7, 7, generator=generator)

    reference_input = features.clone().requires_grad_(True)
    reference = torchvision_roi_align(reference_input, rois, (7, 7), 0.25, sampling_ratio, aligned)
    reference.backward(grad_output)

    grouped_input = features.clone().requires_grad_(True)
    grouped = roi_align(grouped_input, rois, (7, 7), 0.25, sampling_ratio, aligned, groups=groups)
    grouped.backward(grad_output)

    assert grouped.shape == (40, 8, 7, 7)
    assert torch.equal(grouped, reference)
    assert reference_input.grad.abs().sum() > 0
    assert torch.equal(grouped_input.grad, reference_input.grad)


def test_boxes_go_to_the_level_of_their_size():
    boxes = Boxes(
        torch.tensor([[0, 0, 32, 32], [0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 448, 448], [0, 0, 2000, 2000]])
    )
    levels = assign_boxes_to_levels([boxes], min_level=2, max_level=5, canonical_box_size=224, canonical_level=4)
    assert levels.tolist() == [0, 1, 2, 3, 3]


def test_pooler_reads_each_box_from_its_level():
    generator = torch.Generator().manual_seed(1)
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    features = [torch.randn(2, 4, 256 // s, 256 // s, generator=generator) for s in (4, 8, 16, 32)]
    box_lists = [
        Boxes(torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 0.0, 250.0, 250.0]])),
        Boxes(torch.tensor([[20.0, 30.0, 150.0, 170.0]])),
    ]
    pooler = ROIPooler(7, scales, sampling_ratio=0, pooler_type="ROIAlignV2")
    pooled = pooler(features, box_lists)

    levels = assign_boxes_to_levels(box_lists, 2, 5, 224, 4).tolist()
    rois = [(0, box_lists[0].tensor[0]), (0, box_lists[0].tensor[1]), (1, box_lists[1].tensor[0])]
    assert levels == [0, 2, 1]
    for row, ((image, box), level) in enumerate(zip(rois, levels)):
        expected = torchvision_roi_align(
            features[level], torch.cat([torch.tensor([float(image)]), box])[None], (7, 7), scales[level], 0, True
        )
        assert torch.equal(pooled[row : row + 1], expected)


def test_pooler_with_no_boxes_returns_an_empty_batch():
    pooler = ROIPooler(14, (1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2")
    out = pooler([torch.randn(1, 3, 8, 8)], [Boxes(torch.zeros(0, 4))])
    assert out.shape == (0, 3, 14, 14)


@pytest.mark.parametrize("output_size", [7, (5, 3)])
def test_roi_align_module_equals_the_function(output_size):
    from project.layers import ROIAlign

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 16, 20, generator=generator)
    rois = _random_rois(10, 2, 64, 80, generator)
    module = ROIAlign(output_size=output_size, spatial_scale=0.25, sampling_ratio=2, aligned=False)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    assert torch.equal(module(features, rois), roi_align(features, rois, size, 0.25, 2, False))
    assert torch.equal(module(features, rois.double()), module(features, rois))  # rois take the features' dtype
    assert "spatial_scale=0.25" in repr(module) and list(module.state_dict()) == []
    with pytest.raises(ValueError, match=r"\(K, 5\) rois"):
        module(features, rois[:, 1:])
