"""A stand-in detector for tiled-inference tests, registered as the meta-architecture
"BrightBlobs": each 8-connected component of pixels brighter than 127 (mean over channels) is
an object of class 0, scored by its mean brightness / 255, with its exact mask as a crop and its
tight box. Inputs are taken at the size given (no resizing). Like a trained model it sees only
its tile, so an object cut by a tile border comes out as a fragment; unlike one it never misses,
so a lost, doubled or broken object is the merge's fault."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from project.modeling.meta_arch.build import META_ARCH_REGISTRY
from project.structures import Boxes, CroppedBitMasks, Instances, MaskCrop

NAME = "BrightBlobs"  # MODEL.META_ARCHITECTURE


@META_ARCH_REGISTRY.register()
class BrightBlobs(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, batched_inputs):
        outputs = []
        for item in batched_inputs:
            grey = item["image"].numpy().mean(axis=0)
            assert grey.shape == (item["height"], item["width"]), "BrightBlobs does not resize"
            count, labels, stats, _ = cv2.connectedComponentsWithStats((grey > 127).astype(np.uint8), connectivity=8)
            boxes, scores, crops = [], [], []
            for k in range(1, count):
                x, y, w, h = (int(v) for v in stats[k, :4])
                mask = labels[y : y + h, x : x + w] == k
                boxes.append([x, y, x + w, y + h])
                scores.append(float(grey[y : y + h, x : x + w][mask].mean() / 255))
                crops.append(MaskCrop(mask, x, y, grey.shape))
            result = Instances(grey.shape)
            result.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            result.scores = torch.tensor(scores, dtype=torch.float32)
            result.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
            result.pred_masks = CroppedBitMasks(crops, grey.shape)
            outputs.append({"instances": result})
        return outputs
