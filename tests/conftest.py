"""Shared fixtures: where the real data lives, and skipping cleanly where it is absent; tests
that run long without the ``slow`` mark are listed at the end of a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """With ``PROJECT_REQUIRE_DETECTRON2=1`` (CI's Detectron2 stage) a missing Detectron2 is an
    error, so that the parity and bridge tests cannot pass by skipping."""
    if os.environ.get("PROJECT_REQUIRE_DETECTRON2") == "1":
        try:
            import detectron2  # noqa: F401
        except ImportError as e:
            raise pytest.UsageError(f"PROJECT_REQUIRE_DETECTRON2=1 but Detectron2 cannot be imported: {e}") from e


# A test that takes longer than this (its own call, not fixtures) without the ``slow`` mark is
# named at the end of the run, so that ``-m "not slow"`` stays a quick development loop.
UNMARKED_SLOW_SECONDS = 10.0
_unmarked_slow = []


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    if call.when == "call" and call.duration > UNMARKED_SLOW_SECONDS and item.get_closest_marker("slow") is None:
        _unmarked_slow.append((item.nodeid, call.duration))


def pytest_terminal_summary(terminalreporter) -> None:
    if _unmarked_slow:
        terminalreporter.section(f"tests over {UNMARKED_SLOW_SECONDS:.0f} s without the slow mark")
        for nodeid, seconds in _unmarked_slow:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")


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
