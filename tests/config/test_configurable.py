"""``configurable``: a component built from plain arguments or from a config gives the same object."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from project.config import configurable, default_cfg, is_config


class Head:
    @configurable
    def __init__(self, channels: int, *, num_classes: int, norm: str = ""):
        self.channels, self.num_classes, self.norm = channels, num_classes, norm

    @classmethod
    def from_config(cls, cfg, channels: int) -> Dict[str, Any]:
        return {"channels": channels, "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES, "norm": cfg.MODEL.FPN.NORM}


def test_plain_arguments_and_config_give_the_same_component():
    cfg = default_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 7
    plain = Head(256, num_classes=7, norm=cfg.MODEL.FPN.NORM)
    built = Head(cfg, 256)
    assert vars(plain) == vars(built) == {"channels": 256, "num_classes": 7, "norm": ""}
    assert vars(Head(cfg=cfg, channels=256)) == vars(built)


def test_keyword_arguments_beside_a_config_replace_what_it_says():
    built = Head(default_cfg(), 64, num_classes=3)
    assert (built.channels, built.num_classes) == (64, 3)


def test_a_subclass_with_its_own_from_config_is_built_from_it():
    class WideHead(Head):
        @classmethod
        def from_config(cls, cfg, channels: int) -> Dict[str, Any]:
            return {**super().from_config(cfg, channels), "channels": 2 * channels}

    assert WideHead(default_cfg(), 32).channels == 64


def test_a_config_without_from_config_is_refused_with_a_hint():
    class Plain:
        @configurable
        def __init__(self, size: int):
            self.size = size

    assert Plain(3).size == 3
    with pytest.raises(TypeError, match="has no from_config"):
        Plain(default_cfg())


def test_only_init_can_be_decorated_and_from_config_must_return_a_dict():
    with pytest.raises(TypeError, match="__init__"):
        configurable(lambda cfg: None)

    class Broken:
        @configurable
        def __init__(self, size: int): ...

        @classmethod
        def from_config(cls, cfg):
            return [1]

    with pytest.raises(TypeError, match="must return a dict"):
        Broken(default_cfg())


def test_detectron2_configs_are_recognised_by_type_name():
    class CfgNode(dict):
        pass

    assert is_config(CfgNode()) and is_config(default_cfg()) and not is_config({"MODEL": {}})


def _loader_arguments(cfg, dataset_name: str) -> Dict[str, Any]:
    return {"names": [dataset_name], "batch_size": cfg.SOLVER.IMS_PER_BATCH}


@configurable(from_config=_loader_arguments)
def build_loader(names, *, batch_size: int, shuffle: bool = False):
    return {"names": names, "batch_size": batch_size, "shuffle": shuffle}


def test_a_function_takes_plain_arguments_or_a_config():
    cfg = default_cfg()
    from_config = build_loader(cfg, "cells_val", shuffle=True)
    assert from_config == {"names": ["cells_val"], "batch_size": cfg.SOLVER.IMS_PER_BATCH, "shuffle": True}
    assert build_loader(["cells_val"], batch_size=cfg.SOLVER.IMS_PER_BATCH, shuffle=True) == from_config
    assert build_loader.__name__ == "build_loader"
    with pytest.raises(TypeError, match="from_config="):
        configurable()
