"""``train_net.py`` end to end, in subprocesses: bad input ends with a message naming the
problem and a non-zero status, leaving no checkpoint behind; eval-only saves its config."""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg, load_cfg
from project.modeling import build_model

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


@pytest.mark.slow
def test_unregistered_dataset(tmp_path):
    result = _train_net("DATASETS.TRAIN=[no_such_dataset]", f"OUTPUT_DIR={tmp_path}")
    _assert_fails_with(result, "train_net.py: error:", "'no_such_dataset'", "not registered", "cells_demo_train")


@pytest.mark.slow
def test_missing_weights_file(tmp_path):
    result = _train_net(f"MODEL.WEIGHTS={tmp_path}/missing.pth", f"OUTPUT_DIR={tmp_path}")
    _assert_fails_with(result, "train_net.py: error:", f"{tmp_path}/missing.pth", "no such file")


@pytest.mark.slow
def test_config_that_does_not_resolve(tmp_path):
    result = _train_net("OUTPUT_DIR=${oc.env:NO_SUCH_VARIABLE_FOR_TRAIN_NET}/out")
    _assert_fails_with(result, "train_net.py: error:", "NO_SUCH_VARIABLE_FOR_TRAIN_NET")


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_alias_continues_from_the_last_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "out"
    two_iterations = ["SOLVER.MAX_ITER=2", "SOLVER.CHECKPOINT_PERIOD=1"]
    first = _train_net(*tiny_overrides(tiny_data, [], str(out), extra=two_iterations))
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _train_net("--resume", *tiny_overrides(tiny_data, [], str(out), extra=["SOLVER.MAX_ITER=3"]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_cfg(out / "config.yaml").resume is True
    iterations = [json.loads(line)["iteration"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert iterations == [0, 1, 2]  # the second run did only iteration 2, after the first's two


# --------------------------------------------------------------------------- bad input: one paragraph, status 1

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _without_permission_override():
    """In the child: take the capabilities that let root ignore file permissions out of the
    bounding set, so that the Python it executes is refused a read-only folder like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _copy_coco(tiny_data, directory, name, edit):
    """A copy of ``tiny_data``'s COCO file with ``edit`` applied to its dict, as the dataset
    ``(name, json_file, image_root)`` that ``tiny_overrides`` registers."""
    _, json_file, image_root = tiny_data
    data = json.loads(open(json_file).read())
    edit(data)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data))
    return name, str(path), image_root


def _add_category(data):
    data["categories"].append({"id": 2, "name": "blob"})


def _empty_first_box(data):
    data["annotations"][0]["bbox"] = [0, 0, -1, 5]


def _tiny_state_dict(tiny_data, tmp_path):
    return build_model(get_cfg(tiny_overrides(tiny_data, [], str(tmp_path / "unused")))).state_dict()


def _case_extra_test_class(tiny_data, tmp_path, out):
    blob = _copy_coco(tiny_data, tmp_path, "cli_tiny_blob", _add_category)
    return tiny_overrides(tiny_data, [blob], out), ["DATASETS.TEST", "'cli_tiny_blob'", "['disk', 'blob']", "['disk']"]


def _case_diverging_learning_rate(tiny_data, tmp_path, out):
    extra = ["SOLVER.BASE_LR=3.4e38", "SOLVER.MAX_ITER=1", "SOLVER.WARMUP_ITERS=0"]
    return tiny_overrides(tiny_data, [], out, extra=extra), ["model_final.pth", "cls_score", "SOLVER.BASE_LR"]


def _case_diverged_loss(tiny_data, tmp_path, out):
    extra = ["SOLVER.BASE_LR=3.4e38", "SOLVER.MAX_ITER=2", "SOLVER.WARMUP_ITERS=0"]
    return tiny_overrides(tiny_data, [], out, extra=extra), ["diverged"]


def _case_nan_weights(tiny_data, tmp_path, out):
    state_dict = _tiny_state_dict(tiny_data, tmp_path)
    state_dict["roi_heads.box_head.fc1.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pth"
    torch.save({"model": state_dict}, path)
    return tiny_overrides(tiny_data, [], out, extra=[f"MODEL.WEIGHTS={path}"]), [str(path), "box_head.fc1.weight"]


def _case_object_array_pkl(tiny_data, tmp_path, out):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.array([1, "a"], dtype=object)}, "__author__": "someone"}))
    return tiny_overrides(tiny_data, [], out, extra=[f"MODEL.WEIGHTS={path}"]), [str(path), "'w'", "object"]


def _case_unreadable_last_checkpoint(tiny_data, tmp_path, out):
    os.makedirs(out)
    with open(os.path.join(out, "last_checkpoint"), "wb") as f:
        f.write(b"\xff\xfe\x00")
    return tiny_overrides(tiny_data, [], out, extra=["resume=true"]), ["last_checkpoint", "UTF-8", "resume=false"]


def _case_read_only_output_dir(tiny_data, tmp_path, out):
    os.makedirs(out)
    os.chmod(out, 0o555)
    return tiny_overrides(tiny_data, [], out), ["OUTPUT_DIR", out, "Permission denied"]


def _case_bad_annotation_with_error_policy(tiny_data, tmp_path, out):
    bad = _copy_coco(tiny_data, tmp_path, "cli_tiny_bad_box", _empty_first_box)
    extra = ["DATALOADER.ON_BAD_ANNOTATION=error"]
    return tiny_overrides(bad, [], out, extra=extra), ["cli_tiny_bad_box.json", "annotation id 1", "no area"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        _case_extra_test_class,
        _case_diverging_learning_rate,
        _case_diverged_loss,
        _case_nan_weights,
        _case_object_array_pkl,
        _case_unreadable_last_checkpoint,
        _case_read_only_output_dir,
        _case_bad_annotation_with_error_policy,
    ],
    ids=lambda case: case.__name__[len("_case_") :],
)
def test_bad_input_ends_with_one_paragraph_and_status_1(tiny_data, tmp_path, case):
    out = str(tmp_path / "out")
    arguments, fragments = case(tiny_data, tmp_path, out)
    preexec_fn = _without_permission_override if os.geteuid() == 0 else None  # root writes read-only folders

    result = _train_net(*arguments, preexec_fn=preexec_fn)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    message = result.stderr.split("train_net.py: error: ", 1)[-1].strip()
    assert message and "\n" not in message, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in message, message
    leftovers = os.listdir(out) if os.path.isdir(out) else []
    assert not [name for name in leftovers if name.endswith(".pth")], leftovers
