"""Which images the AP covers: a test image left out as bad input when its dataset is loaded is
not scored as an image without detections (which would lower the AP with no error)."""

from __future__ import annotations

import json
from pathlib import Path

from test_category_mapping import (
    ReplayModel,
    assert_same,
    evaluate_in_order,
    official_metrics,
    predictions,
    write_dataset,
)


def test_an_image_skipped_when_loading_is_left_out_of_the_ap(tmp_path):
    json_file = write_dataset(tmp_path, [1, 2])
    results = predictions(json_file, [1, 2])
    (tmp_path / "img9.png").write_text("not an image")  # left out, and counted, when loaded
    ours = evaluate_in_order("evaluated_images", json_file, tmp_path / "out", True, ReplayModel(results, [1, 2]))

    # The reference: pycocotools on a ground truth that never had that image.
    coco = json.loads(json_file.read_text())
    coco["images"] = [i for i in coco["images"] if i["id"] != 9]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 9]
    without = Path(tmp_path / "without_9.json")
    without.write_text(json.dumps(coco))
    kept = {i: r for i, r in results.items() if i != 9}
    for task in ("bbox", "segm"):
        assert_same(ours[task], official_metrics(without, kept, task))
