"""Command-line override keys checked against the schema, with the valid keys in the message."""

from __future__ import annotations

import pytest

from project.config import get_cfg
from project.config.overrides import UnknownConfigKeyError, check_overrides


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("MODEL.RESNETS.DEPHT=50", ["'MODEL.RESNETS.DEPHT'", "Valid keys under MODEL.RESNETS:", "Did you mean DEPTH"]),
        ("NUM_GPUS=2", ["'NUM_GPUS'", "at the top level", "num_gpus"]),
        ("SOLVER.MAX_ITER.STEPS=1", ["SOLVER.MAX_ITER is a value"]),
        ("~SOLVER.NO_SUCH_KEY", ["'SOLVER.NO_SUCH_KEY'", "BASE_LR"]),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(override, fragments):
    with pytest.raises(UnknownConfigKeyError) as error:
        check_overrides([override])
    for fragment in fragments:
        assert fragment in str(error.value)


def test_known_keys_groups_and_free_form_entries_pass_and_take_effect():
    overrides = [
        "SOLVER.BASE_LR=0.01",
        "model=mask_rcnn_R_50_FPN",
        "+experiment=finetune_dsb2018",
        "hydra.run.dir=.",
        "DATASETS.REGISTER.0.ARGS.json_file=/data/train.json",
        "INPUT.MIN_SIZE_TRAIN=[480,512]",
    ]
    check_overrides(overrides)  # raises on a key it does not accept
    cfg = get_cfg(overrides)
    assert cfg.SOLVER.BASE_LR == 0.01
    assert cfg.MODEL.RESNETS.DEPTH == 50  # the group choice, not the default R-18 demo model
    assert cfg.DATASETS.TRAIN == ["dsb2018_train"]  # from the experiment
    assert cfg.DATASETS.REGISTER[0].ARGS.json_file == "/data/train.json"
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [480, 512]
