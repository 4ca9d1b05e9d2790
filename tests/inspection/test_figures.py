"""Figures: each picture shows what it names, in the colours its legend gives."""

from __future__ import annotations

import numpy as np
from inspection_fixtures import colour_pixels, shared_inspection

from project.inspection import figures


def _panel(figure: figures.Figure, index: int = 0) -> np.ndarray:
    x, y, w, h = figure.panels[index]
    return figure.image[y : y + h, x : x + w]


def test_positive_and_negative_anchors_are_both_drawn(data_root):
    _, inspection_input, inspection = shared_inspection(data_root)
    image = inspection_input.input_image_rgb()
    gt = inspection_input.ground_truth.input_instances.gt_boxes.tensor.numpy()
    figure = figures.anchor_labels_figure(image, inspection.anchors, gt)
    scale = figure.scale
    assert scale == 2 and _panel(figure).shape == (288 * scale, 288 * scale, 3)
    plain = figures.upscaled(image, scale)
    picture = _panel(figure)
    for colour in (figures.POSITIVE_COLOR, figures.NEGATIVE_COLOR, figures.IGNORED_COLOR, figures.GT_COLOR):
        assert colour_pixels(picture, colour) > colour_pixels(plain, colour) + 50, colour
    # Away from the boxes the picture is the image.
    assert (picture == plain).all(axis=2).mean() > 0.5


def test_top_anchors_are_dashed_and_their_refined_boxes_solid():
    canvas = np.zeros((40, 40, 3), np.uint8)
    figures.draw_dotted_box(canvas, [5, 5, 35, 35], (255, 0, 0))
    dashed = colour_pixels(canvas, (255, 0, 0))
    solid = np.zeros((40, 40, 3), np.uint8)
    figures.draw_box(solid, [5, 5, 35, 35], (255, 0, 0))
    assert colour_pixels(solid, (255, 0, 0)) == 4 * 29  # the outline of pixels 5..34
    assert 0.4 * 116 < dashed < 0.8 * 116
    assert ((canvas > 0) <= (solid > 0)).all()  # dashes lie on the outline
    outside = np.zeros((40, 40, 3), np.uint8)
    figures.draw_box(outside, [45, 5, 60, 20], (255, 0, 0))
    figures.draw_dotted_box(outside, [5, 5, float("nan"), 20], (255, 0, 0))
    assert not outside.any()


def test_step_figures_draw_on_their_panels(data_root):
    _, inspection_input, inspection = shared_inspection(data_root)
    image = inspection_input.input_image_rgb()
    plain = figures.upscaled(image, 2)
    drawn = [
        figures.top_anchors_figure(image, inspection.anchors, None),
        figures.proposals_figure(image, inspection.proposals, None, 10),
        figures.refinement_figure(image, inspection.boxes, 10),
    ]
    for figure in drawn:
        for i in range(len(figure.panels)):
            assert (_panel(figure, i) != plain).any(axis=2).sum() > 200
    assert len(drawn[1].panels) == len(drawn[2].panels) == 2


def test_mask_activation_and_weight_figures(data_root):
    _, inspection_input, inspection = shared_inspection(data_root)
    masks = figures.masks_figure(inspection_input.image_rgb, inspection.masks)
    assert len(masks.panels) == 3  # 30 detections in columns of 10
    assert colour_pixels(masks.image, figures.MODEL_MASK_COLOR) > 0
    montage = figures.activation_montage(inspection.activations[-1])
    assert montage.image.shape[0] > 128
    pages = figures.weight_pages(inspection.weights, per_page=16)
    assert len(pages) == 3


def test_heatmap_marks_nan_in_magenta_and_spans_the_range():
    values = np.array([[0.0, 1.0], [np.nan, 0.5]], dtype=np.float32)
    picture = figures.heatmap(values)
    assert tuple(picture[1, 0]) == figures.NAN_COLOR
    assert picture[0, 0].sum() < picture[0, 1].sum()  # dark to bright
