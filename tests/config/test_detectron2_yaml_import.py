"""``project.config.detectron2_yaml``: Detectron2 YAML configs (with ``_BASE_`` chains) read into
this project's config without Detectron2; where Detectron2 is importable, checked against it."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from project.config.detectron2_yaml import (
    DETECTRON2_DEFAULTS_THAT_DIFFER,
    detectron2_component_name,
    flatten,
    load_detectron2_yaml,
    project_component_name,
    read_detectron2_yaml,
)

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO.parent / "shared" / "vendor"
R101_3X = "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
CHAIN = ("Base-RCNN-FPN.yaml", R101_3X)


def _detectron2_source_configs() -> Path | None:
    """``configs/`` of a Detectron2 source checkout found without importing Detectron2."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or spec.origin is None:
        return None
    configs = Path(spec.origin).resolve().parents[1] / "configs"
    return configs if (configs / R101_3X).is_file() else None


@pytest.fixture(scope="module")
def zoo_configs(tmp_path_factory) -> Path:
    """A ``configs/`` folder holding the R101-FPN 3x chain: extracted from the vendored
    Detectron2 tarball, else a Detectron2 source checkout's own."""
    tarballs = sorted(VENDOR.glob("detectron2-*.tar.gz"))
    if tarballs:
        root = tmp_path_factory.mktemp("detectron2_configs")
        with tarfile.open(tarballs[-1]) as tar:
            for member in tar.getmembers():
                for name in CHAIN:
                    if member.isfile() and member.name.endswith(f"/configs/{name}"):
                        target = root / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar.extractfile(member).read())
        if all((root / name).is_file() for name in CHAIN):
            return root
    source = _detectron2_source_configs()
    if source is None:
        pytest.skip(f"no Detectron2 configs: neither {VENDOR}/detectron2-*.tar.gz nor a Detectron2 source checkout")
    return source


def test_model_zoo_r101_fpn_3x_imports_with_its_values(zoo_configs):
    cfg, ignored = load_detectron2_yaml(zoo_configs / R101_3X)
    assert ignored == []
    # From mask_rcnn_R_101_FPN_3x.yaml, over its base:
    assert cfg.MODEL.RESNETS.DEPTH == 101 and cfg.MODEL.MASK_ON is True
    assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
    assert list(cfg.SOLVER.STEPS) == [210000, 250000] and cfg.SOLVER.MAX_ITER == 270000
    # From Base-RCNN-FPN.yaml ("(640, ...)" strings are tuples, as Detectron2 reads them):
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [640, 672, 704, 736, 768, 800]
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.02
    assert list(cfg.DATASETS.TRAIN) == ["coco_2017_train"] and list(cfg.DATASETS.TEST) == ["coco_2017_val"]
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    assert OmegaConf.to_container(cfg.MODEL.ANCHOR_GENERATOR.SIZES) == [[32], [64], [128], [256], [512]]
    assert cfg.MODEL.RPN.PRE_NMS_TOPK_TEST == 1000 and cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 1000
    # Set by neither file: Detectron2's defaults.
    assert cfg.INPUT.MIN_SIZE_TEST == 800 and cfg.INPUT.MAX_SIZE_TEST == 1333 and cfg.INPUT.MAX_SIZE_TRAIN == 1333
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert cfg.MODEL.DEVICE in ("cpu", "cuda")  # "auto", resolved


def test_imported_config_is_this_projects_own_r101_fpn_3x(zoo_configs):
    from project.model_zoo import get_config

    imported, _ = load_detectron2_yaml(zoo_configs / R101_3X)
    ours = get_config("mask_rcnn_R_101_FPN_3x")
    for section in ("MODEL", "SOLVER", "INPUT", "TEST", "DATASETS"):
        assert OmegaConf.to_container(imported[section]) == OmegaConf.to_container(ours[section]), section


def test_keys_without_equivalent_are_listed_and_warned_once(zoo_configs, tmp_path, caplog):
    derived = tmp_path / "nuclei.yaml"
    base = zoo_configs / R101_3X
    derived.write_text(
        f'_BASE_: "{base}"\n'
        "MODEL:\n  KEYPOINT_ON: True\n  ROI_HEADS:\n    NUM_CLASSES: 3\n"
        "TEST:\n  AUG:\n    ENABLED: True\n"
        'SOLVER:\n  STEPS: (100,)\n  BASE_LR: "1e-3"\n'
    )
    with caplog.at_level(logging.WARNING, logger="project.config.detectron2_yaml"):
        cfg, ignored = load_detectron2_yaml(derived)
    assert ignored == ["MODEL.KEYPOINT_ON", "TEST.AUG.ENABLED"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MODEL.KEYPOINT_ON, TEST.AUG.ENABLED" in warnings[0]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3 and list(cfg.SOLVER.STEPS) == [100] and cfg.SOLVER.BASE_LR == 0.001
    assert cfg.MODEL.RESNETS.DEPTH == 101  # the rest of the chain stays


def test_base_lists_relative_paths_and_later_files_winning(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("MODEL:\n  RESNETS:\n    DEPTH: 50\n    NORM: GN\n")
    (tmp_path / "b.yaml").write_text("MODEL:\n  RESNETS:\n    DEPTH: 101\n")
    (tmp_path / "sub" / "c.yaml").write_text('_BASE_: ["../a.yaml", "../b.yaml"]\nINPUT:\n  FORMAT: RGB\n')
    assert read_detectron2_yaml(tmp_path / "sub" / "c.yaml") == {
        "MODEL": {"RESNETS": {"DEPTH": 101, "NORM": "GN"}},
        "INPUT": {"FORMAT": "RGB"},
    }


def test_bad_files_are_reported_by_name(tmp_path):
    (tmp_path / "loop.yaml").write_text('_BASE_: "loop.yaml"\n')
    with pytest.raises(ValueError, match="_BASE_ cycle"):
        load_detectron2_yaml(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text('_BASE_: "missing.yaml"\n')
    with pytest.raises(FileNotFoundError, match="missing.yaml .a _BASE_ of .*orphan.yaml"):
        load_detectron2_yaml(tmp_path / "orphan.yaml")
    (tmp_path / "old.yaml").write_text("VERSION: 1\n")
    with pytest.raises(ValueError, match="VERSION 1 is an old Detectron2 config format"):
        load_detectron2_yaml(tmp_path / "old.yaml")
    (tmp_path / "typo.yaml").write_text("SOLVER:\n  MAX_ITER: many\n")
    with pytest.raises(ValueError, match="typo.yaml: SOLVER.MAX_ITER='many'"):
        load_detectron2_yaml(tmp_path / "typo.yaml")


def test_component_names_round_trip():
    assert detectron2_component_name("GeneralizedRCNN") == "ProjectGeneralizedRCNN"
    assert detectron2_component_name("build_resnet_fpn_backbone") == "project_build_resnet_fpn_backbone"
    for name in ("GeneralizedRCNN", "StandardROIHeads", "build_resnet_backbone", "Project"):
        assert project_component_name(detectron2_component_name(name)) == name
    assert project_component_name("StandardROIHeads") == "StandardROIHeads"


def test_reading_configs_imports_no_detectron2(zoo_configs):
    code = (
        "import sys, project, project.integrations\n"
        "from project.config.detectron2_yaml import load_detectron2_yaml\n"
        f"load_detectron2_yaml({str(zoo_configs / R101_3X)!r})\n"
        "assert 'detectron2' not in sys.modules, 'detectron2 was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_detectron2_bridge_without_detectron2_says_what_is_missing():
    if importlib.util.find_spec("detectron2") is not None:
        pytest.skip("Detectron2 is importable here")
    with pytest.raises(ModuleNotFoundError, match="project.integrations.detectron2 needs Detectron2"):
        importlib.import_module("project.integrations.detectron2")


# Below: checked against Detectron2 itself, where it is importable.


def test_defaults_table_is_detectron2s_own(tmp_path):
    """An empty file gives Detectron2's defaults for every key both configs have (except
    MODEL.DEVICE, "auto" here), which checks DETECTRON2_DEFAULTS_THAT_DIFFER."""
    pytest.importorskip("detectron2", reason="Detectron2 is not importable")
    from detectron2.config import get_cfg

    (tmp_path / "empty.yaml").write_text("VERSION: 2\n")
    cfg, ignored = load_detectron2_yaml(tmp_path / "empty.yaml")
    assert ignored == []
    ours = flatten(OmegaConf.to_container(cfg))
    theirs = {k: list(v) if isinstance(v, tuple) else v for k, v in flatten(get_cfg()).items()}
    shared = sorted(set(ours) & set(theirs) - {"MODEL.DEVICE"})
    assert len(shared) > 120
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    assert set(DETECTRON2_DEFAULTS_THAT_DIFFER) <= set(shared)


@pytest.mark.slow
def test_imported_config_builds_detectron2s_network(zoo_configs):
    pytest.importorskip("detectron2", reason="Detectron2 is not importable")
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model as d2_build_model

    from project.modeling import build_model

    torch.set_num_threads(1)
    cfg, _ = load_detectron2_yaml(zoo_configs / R101_3X)
    cfg.MODEL.DEVICE = "cpu"
    d2_cfg = get_cfg()
    d2_cfg.merge_from_file(str(zoo_configs / R101_3X))
    d2_cfg.MODEL.DEVICE = "cpu"
    ours = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in d2_build_model(d2_cfg).state_dict().items()}
    assert len(ours) > 500 and ours == theirs
