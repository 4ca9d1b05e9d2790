"""``train_net.py`` end to end, in subprocesses: bad input ends with a message naming the
problem and a non-zero status, leaving no checkpoint behind; eval-only saves its config."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import load_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_net(*arguments, preexec_fn=None, timeout=300):
    return subprocess.run(
        [sys.executable, "train_net.py", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_net_data")
    return ("cli_tiny", *write_tiny_coco(root, num_images=2, seed=4))


def _assert_fails_with(result, *fragments):
    assert result.returncode != 0, result.stdout[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]


def test_unregistered_dataset(tmp_path):
    result = _train_net("DATASETS.TRAIN=[no_such_dataset]", f"OUTPUT_DIR={tmp_path}")
    _assert_fails_with(result, "train_net.py: error:", "'no_such_dataset'", "not registered", "cells_demo_train")


def test_missing_weights_file(tmp_path):
    result = _train_net(f"MODEL.WEIGHTS={tmp_path}/missing.pth", f"OUTPUT_DIR={tmp_path}")
    _assert_fails_with(result, "train_net.py: error:", f"{tmp_path}/missing.pth", "no such file")


def test_config_that_does_not_resolve(tmp_path):
    result = _train_net("OUTPUT_DIR=${oc.env:NO_SUCH_VARIABLE_FOR_TRAIN_NET}/out")
    _assert_fails_with(result, "train_net.py: error:", "NO_SUCH_VARIABLE_FOR_TRAIN_NET")


def test_unknown_key_lists_the_valid_keys():
    result = _train_net("SOLVER.BASE_RL=0.1")
    _assert_fails_with(
        result, "unknown config key 'SOLVER.BASE_RL'", "Valid keys under SOLVER:", "MAX_ITER", "Did you mean BASE_LR"
    )


@pytest.mark.slow
def test_wrong_type_names_the_key_and_type():
    result = _train_net("SOLVER.MAX_ITER=many")
    _assert_fails_with(result, "SOLVER.MAX_ITER", "Integer")


@pytest.mark.slow
def test_unknown_group_option_lists_the_options():
    result = _train_net("+experiment=no_such_experiment")
    _assert_fails_with(result, "experiment/no_such_experiment", "finetune_dsb2018", "coco_pretrain_R101_FPN_3x")


def _limit_file_size():
    """Files larger than 4 MB cannot be written (as on a nearly full disk): writes fail with
    EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))


@pytest.mark.slow
def test_out_of_disk_while_saving_leaves_no_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "out"
    overrides = tiny_overrides(tiny_data, [], str(out), extra=["SOLVER.MAX_ITER=2", "SOLVER.CHECKPOINT_PERIOD=1"])
    result = _train_net(*overrides, preexec_fn=_limit_file_size)
    _assert_fails_with(result, "train_net.py: error: Could not write", "model_0000000.pth", "File too large")
    leftovers = sorted(os.listdir(out))
    assert not [name for name in leftovers if name.endswith((".pth", ".tmp")) or name == "last_checkpoint"], leftovers


@pytest.mark.slow
def test_eval_only_alias_evaluates_and_saves_the_resolved_config(tiny_data, tmp_path):
    out = tmp_path / "out"
    overrides = tiny_overrides(tiny_data, [tiny_data], str(out))
    result = _train_net("--eval-only", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Evaluation results for segm" in result.stdout and "copypaste: AP,AP50" in result.stdout
    assert (out / "inference" / "cli_tiny" / "coco_instances_results.json").is_file()
    saved = load_cfg(out / "config.yaml")
    assert saved.eval_only is True and saved.OUTPUT_DIR == str(out) and saved.DATASETS.TEST == ["cli_tiny"]
    assert not [name for name in os.listdir(out) if name.endswith(".pth")]
