"""Shared fixtures: where the real data lives, and skipping cleanly where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$PROJECT_DATA_ROOT``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("PROJECT_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set PROJECT_DATA_ROOT)")
    return root


def require_dataset(root: Path, name: str) -> Path:
    """``root / name``, skipping the test when that dataset is absent."""
    path = root / name
    if not path.exists():
        pytest.skip(f"dataset {name} not found under {root}")
    return path
