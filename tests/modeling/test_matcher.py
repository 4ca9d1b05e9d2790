"""``Matcher``: labels from IoU thresholds, argmax matching, low-quality matches, edge cases."""

import numpy as np
import pytest
import torch

from project.modeling.matcher import Matcher

FG_THRESHOLDS = [0.3, 0.7]
FG_LABELS = [0, -1, 1]  # background below 0.3, ignored in [0.3, 0.7), foreground from 0.7


def test_labels_follow_half_open_threshold_ranges():
    """Best IoU in [t_i, t_{i+1}) gets label l_i, so 0.3 is ignored and 0.7 is foreground."""
    best = [0.0, 0.1, 0.29, 0.3, 0.5, 0.69, 0.7, 0.95, 1.0]
    expected = [0, 0, 0, -1, -1, -1, 1, 1, 1]
    # Two ground truths; the second row is lower everywhere so the first row gives the best IoU.
    iou = torch.tensor([best, [0.0] * len(best)], dtype=torch.float32)
    _, labels = Matcher(FG_THRESHOLDS, FG_LABELS)(iou)
    assert labels.tolist() == expected


def test_output_shapes_and_dtypes():
    iou = torch.rand(3, 5)
    matches, labels = Matcher(FG_THRESHOLDS, FG_LABELS)(iou)
    assert matches.shape == (5,) and matches.dtype == torch.int64
    assert labels.shape == (5,) and labels.dtype == torch.int8


def test_matched_index_is_argmax_over_ground_truth():
    iou = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.2, 0.05],
            [0.3, 0.8, 0.1, 0.6, 0.05],
            [0.0, 0.2, 0.4, 0.7, 0.10],
        ]
    )
    matches, labels = Matcher(FG_THRESHOLDS, FG_LABELS)(iou)
    assert matches.tolist() == [0, 1, 2, 2, 2]
    assert labels.tolist() == [1, 1, -1, 1, 0]


def test_matched_index_agrees_with_numpy_argmax_on_random_matrix():
    rng = np.random.default_rng(0)
    iou = rng.random((7, 50)).astype(np.float32)  # continuous values: no ties
    matches, labels = Matcher(FG_THRESHOLDS, FG_LABELS)(torch.from_numpy(iou))
    best = iou.max(axis=0)
    assert matches.tolist() == iou.argmax(axis=0).tolist()
    expected_labels = np.where(best < 0.3, 0, np.where(best < 0.7, -1, 1))
    assert labels.tolist() == expected_labels.tolist()


def test_low_quality_matches_make_each_ground_truths_best_predictions_foreground():
    """GT 0 peaks at 0.4 on predictions 1 and 3 (a tie): both become foreground."""
    iou = torch.tensor(
        [
            [0.1, 0.4, 0.2, 0.4, 0.0],
            [0.8, 0.0, 0.1, 0.0, 0.5],
        ]
    )
    _, plain = Matcher(FG_THRESHOLDS, FG_LABELS)(iou)
    assert plain.tolist() == [1, -1, 0, -1, -1]
    matches, low_quality = Matcher(FG_THRESHOLDS, FG_LABELS, allow_low_quality_matches=True)(iou)
    assert low_quality.tolist() == [1, 1, 0, 1, -1]
    assert matches.tolist() == [1, 0, 0, 0, 1]


def test_low_quality_matches_promote_background_predictions_too():
    """A ground truth whose best IoU is below the lowest threshold still gets a foreground match."""
    iou = torch.tensor([[0.05, 0.2, 0.1]])
    _, labels = Matcher(FG_THRESHOLDS, FG_LABELS, allow_low_quality_matches=True)(iou)
    assert labels.tolist() == [0, 1, 0]


def test_low_quality_matches_leave_labels_unchanged_when_every_gt_is_well_matched():
    iou = torch.tensor(
        [
            [0.9, 0.1, 0.5],
            [0.0, 0.75, 0.2],
        ]
    )
    _, plain = Matcher(FG_THRESHOLDS, FG_LABELS)(iou)
    _, low_quality = Matcher(FG_THRESHOLDS, FG_LABELS, allow_low_quality_matches=True)(iou)
    assert plain.tolist() == low_quality.tolist() == [1, 1, -1]


@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_no_ground_truth_gives_all_predictions_the_lowest_label(allow_low_quality):
    matcher = Matcher(FG_THRESHOLDS, FG_LABELS, allow_low_quality_matches=allow_low_quality)
    matches, labels = matcher(torch.zeros(0, 6))
    assert labels.tolist() == [0] * 6  # labels[0]: background
    assert labels.dtype == torch.int8
    assert matches.shape == (6,) and matches.dtype == torch.int64


def test_no_predictions_gives_empty_outputs():
    matches, labels = Matcher(FG_THRESHOLDS, FG_LABELS)(torch.zeros(3, 0))
    assert matches.shape == (0,) and labels.shape == (0,)


def test_single_threshold_splits_background_and_foreground():
    _, labels = Matcher([0.5], [0, 1])(torch.tensor([[0.49, 0.5, 0.51]]))
    assert labels.tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    "thresholds, labels",
    [
        ([0.7, 0.3], [0, -1, 1]),  # unsorted thresholds
        ([0.3, 0.7], [0, 1]),  # one label too few
        ([0.3, 0.7], [0, -1, 1, 1]),  # one label too many
        ([0.3, 0.7], [0, 2, 1]),  # label outside {-1, 0, 1}
    ],
)
def test_invalid_thresholds_or_labels_raise(thresholds, labels):
    with pytest.raises(ValueError):
        Matcher(thresholds, labels)
