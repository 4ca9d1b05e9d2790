"""``GeneralizedRCNN``: backbone, proposal generator and ROI heads, with Detectron2's
input/output contract."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...config import configurable
from ...structures import ImageList, Instances
from ...utils.events import storage_for_training_image
from ..backbone import Backbone, build_backbone
from ..postprocessing import check_pred_mask_format, detector_postprocess
from ..proposal_generator import build_proposal_generator
from ..registry import META_ARCH_REGISTRY
from ..roi_heads import build_roi_heads

BatchedInputs = List[Dict[str, Any]]

# The training picture of GeneralizedRCNN (see visualize_training): how many proposals, and its name.
VIS_NUM_PROPOSALS = 20
PROPOSALS_IMAGE_NAME = f"train/ground_truth_left_top{VIS_NUM_PROPOSALS}_proposals_right"


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """Mask R-CNN and its relatives: ``backbone`` features, ``proposal_generator`` proposals
    (or, when it is None, each input's precomputed ``"proposals"``) and ``roi_heads`` detections.

    Called with a list of dicts, one per image: ``"image"`` a (C, H, W) tensor in
    ``input_format`` channel order on the 0-255 scale, normalised with ``pixel_mean`` and
    ``pixel_std`` (one value per channel); optionally ``"height"``/``"width"``, the size to
    report results at (the original image's); and in training ``"instances"`` with
    ``gt_boxes``, ``gt_classes`` (and ``gt_masks``) in the frame of ``"image"``.

    Returns, in training, a dict of scalar losses; in inference, one ``{"instances": Instances}``
    per image with ``pred_boxes``, ``scores``, ``pred_classes`` and, with masks on,
    ``pred_masks``: (N, height, width) booleans, or with ``pred_mask_format`` "crop" the same
    masks as a ``CroppedBitMasks``. ``channels_last`` lays the convolutions' weights and the
    images out channels-last (the same results, faster on GPUs). With ``vis_period > 0``,
    training records a picture every ``vis_period`` iterations (see ``visualize_training``).

    From a config: the registered components ``MODEL.BACKBONE``, ``MODEL.PROPOSAL_GENERATOR``
    and ``MODEL.ROI_HEADS`` (built in that order), ``MODEL.PIXEL_MEAN``/``PIXEL_STD``,
    ``INPUT.FORMAT``, ``VIS_PERIOD``, ``TEST.PRED_MASK_FORMAT`` and ``MODEL.CHANNELS_LAST``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: Optional[nn.Module],
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: Optional[str] = None,
        vis_period: int = 0,
        pred_mask_format: str = "bitmask",
        channels_last: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"pixel_mean (MODEL.PIXEL_MEAN) has {len(pixel_mean)} values but pixel_std (MODEL.PIXEL_STD) has "
                f"{len(pixel_std)}: give one of each per image channel"
            )
        self.register_buffer("pixel_mean", torch.tensor(list(pixel_mean)).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(list(pixel_std)).view(-1, 1, 1), persistent=False)
        self.input_format = input_format
        self.vis_period = vis_period
        self.pred_mask_format = check_pred_mask_format(pred_mask_format)
        self.channels_last = channels_last
        if self.channels_last:  # every 4-D weight: backbone, RPN head and the mask head's convolutions
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, backbone.output_shape()),
            "roi_heads": build_roi_heads(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "vis_period": cfg.VIS_PERIOD,
            "pred_mask_format": cfg.TEST.PRED_MASK_FORMAT,
            "channels_last": cfg.MODEL.CHANNELS_LAST,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _backbone_features(self, images: ImageList) -> Dict[str, torch.Tensor]:
        x = images.tensor
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, batched_inputs: BatchedInputs):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("in training every input dict needs 'instances' (the ground truth)")
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self._backbone_features(images)
        proposals, proposal_losses = self._proposals(images, features, batched_inputs, gt_instances)
        if self.vis_period > 0:
            self.visualize_training(batched_inputs, proposals)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**detector_losses, **proposal_losses}

    def visualize_training(self, batched_inputs: BatchedInputs, proposals: List[Instances]) -> None:
        """When a training picture is due (every ``vis_period`` iterations, see
        ``storage_for_training_image``), record ``PROPOSALS_IMAGE_NAME`` in the event storage:
        the batch's first image with its ground-truth boxes on the left and its
        ``VIS_NUM_PROPOSALS`` best proposals (by objectness) on the right."""
        storage = storage_for_training_image(PROPOSALS_IMAGE_NAME, self.vis_period)
        if storage is None:
            return
        from ...data.detection_utils import model_image_to_rgb
        from ...visualization.training_pictures import as_chw, boxes_beside_boxes

        image = batched_inputs[0]["image"].detach()
        if image.is_floating_point():
            image = image.clamp(0, 255).round().to(torch.uint8)
        image_format = self.input_format or ("L" if image.shape[0] == 1 else "BGR")
        picture = boxes_beside_boxes(
            model_image_to_rgb(image, image_format),
            batched_inputs[0]["instances"].gt_boxes,
            proposals[0].proposal_boxes[:VIS_NUM_PROPOSALS],
        )
        storage.put_image(PROPOSALS_IMAGE_NAME, as_chw(picture))

    def _proposals(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        batched_inputs: BatchedInputs,
        gt_instances: Optional[List[Instances]],
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Per image, the proposals and, in training, the proposal generator's losses; without a
        proposal generator, each input's ``"proposals"`` (precomputed) and no losses."""
        if self.proposal_generator is not None:
            return self.proposal_generator(images, features, gt_instances)
        if any("proposals" not in x for x in batched_inputs):
            raise ValueError("a GeneralizedRCNN without a proposal generator needs 'proposals' in every input dict")
        return [x["proposals"].to(self.device) for x in batched_inputs], {}

    def inference(
        self,
        batched_inputs: BatchedInputs,
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ) -> List[Dict[str, Instances]] | List[Instances]:
        """Detect objects. With ``detected_instances`` (boxes and classes in the frame of the
        preprocessed images), only the remaining heads (masks) run on those boxes. Without
        post-processing, returns raw Instances in the preprocessed (resized) frame."""
        if self.training:
            raise RuntimeError("GeneralizedRCNN.inference needs eval mode (call model.eval())")
        images = self.preprocess_image(batched_inputs)
        detections = self._detect(images, self._backbone_features(images), batched_inputs, detected_instances)
        if do_postprocess:
            return self._postprocess(detections, batched_inputs, images.image_sizes)
        return detections

    def _detect(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        batched_inputs: BatchedInputs,
        given: Optional[List[Instances]],
    ) -> List[Instances]:
        """Per image, detections in the frame of the preprocessed images: found from the
        proposals, or, for ``given`` boxes and classes, completed by the remaining heads."""
        if given is not None:
            return self.roi_heads.forward_with_given_boxes(features, [x.to(self.device) for x in given])
        proposals, _ = self._proposals(images, features, batched_inputs, None)
        return self.roi_heads(images, features, proposals, None)[0]

    def _checked_image(self, i: int, x: Dict[str, Any]) -> torch.Tensor:
        """Input ``i``'s ``"image"``, or a ``ValueError`` saying what is wrong with it: a missing key,
        a shape other than (C, H, W) with pixels, a dtype other than uint8 or float, NaN or infinite
        values."""
        if "image" not in x:
            raise ValueError(f"input {i} has no 'image' key; got keys {sorted(x)}")
        image = x["image"]
        channels = self.pixel_mean.shape[0]
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != channels:
            shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
            order = f" in {self.input_format} order" if self.input_format else ""
            raise ValueError(f"input {i}: 'image' must be a ({channels}, H, W) tensor{order}, got {shape}")
        if image.numel() == 0:
            raise ValueError(
                f"input {i}: 'image' has no pixels (shape {tuple(image.shape)}); an empty crop or slice gives this: "
                "check how the tensor was made"
            )
        if not (image.is_floating_point() or image.dtype == torch.uint8):
            raise ValueError(f"input {i}: 'image' must be uint8 or floating point on 0-255, got {image.dtype}")
        if image.is_floating_point():  # uint8 images, as the data pipeline gives, need no scan
            bad = int((~torch.isfinite(image)).sum())
            if bad:
                raise ValueError(
                    f"input {i}: 'image' has {bad} NaN or infinite values (of {image.numel()}); the model needs "
                    "finite values on the 0-255 scale: replace them (e.g. torch.nan_to_num) or build inputs with "
                    "project.data.detection_utils.convert_image_to_model_format, which rejects them by name"
                )
        return image

    def preprocess_image(self, batched_inputs: BatchedInputs) -> ImageList:
        """Check and normalise each ``"image"`` (see ``_checked_image``) and pad the batch to a
        multiple of the backbone's ``size_divisibility`` (32 for FPN)."""
        images = [
            (self._checked_image(i, x).to(self.device, non_blocking=True) - self.pixel_mean) / self.pixel_std
            for i, x in enumerate(batched_inputs)
        ]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def _postprocess(
        self, instances: List[Instances], batched_inputs: BatchedInputs, image_sizes
    ) -> List[Dict[str, Instances]]:
        # Each image's detections are rescaled to the size its input dict asks for (the
        # original image's), or kept at the size the model saw.
        return [
            {
                "instances": detector_postprocess(
                    found, x.get("height", seen[0]), x.get("width", seen[1]), mask_format=self.pred_mask_format
                )
            }
            for found, x, seen in zip(instances, batched_inputs, image_sizes)
        ]
