"""The TensorBoard pictures of training: pictures side by side, mask grids, predictions beside
ground truth."""

from __future__ import annotations

import numpy as np
import torch

from project.structures import Boxes, Instances
from project.visualization.training_pictures import (
    GAP,
    SEPARATOR_RGB,
    as_chw,
    boxes_beside_boxes,
    mask_pairs_grid,
    predictions_beside_ground_truth,
    side_by_side,
)


def test_side_by_side_pads_shorter_pictures_and_as_chw_transposes():
    tall = np.full((6, 3, 3), 10, np.uint8)
    short = np.full((4, 5, 3), 20, np.uint8)
    joined = side_by_side(tall, short)
    assert joined.shape == (6, 3 + GAP + 5, 3)
    assert (joined[:, :3] == 10).all() and (joined[:4, 3 + GAP :] == 20).all()
    assert not (joined[4:, 3 + GAP :] == 20).any()
    chw = as_chw(joined)
    assert chw.shape == (3, 6, 12) and chw.dtype == torch.uint8 and torch.equal(chw[:, 0, 0], torch.full((3,), 10))


def test_boxes_beside_boxes_draws_each_set_on_its_own_copy():
    image = np.zeros((40, 50, 3), np.uint8)
    picture = boxes_beside_boxes(image, Boxes(torch.tensor([[5.0, 5.0, 20.0, 20.0]])), np.zeros((0, 4)))
    assert picture.shape == (40, 2 * 50 + GAP, 3)
    assert picture[:, :50].any() and not picture[:, 50 + GAP :].any()


def test_mask_pairs_grid_puts_each_prediction_beside_its_target():
    predicted = torch.zeros(5, 4, 4)
    target = torch.ones(5, 4, 4)
    grid = mask_pairs_grid(predicted, target, columns=2, zoom=1)
    cell_w = 2 * 4 + 1
    assert grid.shape == (3 * 4 + 2 * GAP, 2 * cell_w + GAP, 3)
    assert (grid[:4, :4] == 0).all() and (grid[:4, 5:9] == 255).all()
    assert tuple(grid[0, 4]) == SEPARATOR_RGB


def test_predictions_beside_ground_truth_draws_only_confident_predictions():
    image = np.zeros((30, 40, 3), np.uint8)
    predictions = Instances((30, 40))
    predictions.pred_boxes = Boxes(torch.tensor([[2.0, 2.0, 12.0, 12.0], [20.0, 10.0, 35.0, 25.0]]))
    predictions.scores = torch.tensor([0.9, 0.1])
    predictions.pred_classes = torch.tensor([0, 0])
    dataset_dict = {"height": 30, "width": 40, "annotations": []}
    picture = predictions_beside_ground_truth(image, predictions, dataset_dict, score_threshold=0.5, max_size=None)
    left = picture[:, :40]
    assert picture.shape == (30, 2 * 40 + GAP, 3)
    assert left[:14, :14].any() and not left[16:, 18:].any()  # the 0.1 box is left out
    assert not picture[:, 40 + GAP :].any()  # no ground truth
    halved = predictions_beside_ground_truth(image, predictions, dataset_dict, max_size=20)
    assert halved.shape == (15, 2 * 20 + GAP, 3)
