"""The test tree has no __init__ files, so pytest imports each test module by its file name:
two modules with one name stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_every_test_module_has_a_name_of_its_own():
    names = Counter(path.name for path in Path(__file__).parent.rglob("*.py") if path.name != "__init__.py")
    assert not [name for name, count in names.items() if count > 1 and name != "conftest.py"]
