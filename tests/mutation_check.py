"""Deliberate bugs the test suite must catch.

Each mutation below is applied, one at a time, to a scratch copy of the committed tree (``git
archive HEAD``), and the tests that guard against it run there. The same tests first run
unmutated and must pass. One JSON line per run; exit status 1 if a mutation survives (its tests
pass) or the unmutated run fails.

    .venv/bin/python tests/mutation_check.py             # all, a few minutes on 2 cores
    .venv/bin/python tests/mutation_check.py --only background_first_in_inference
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str  # must occur exactly once in ``file``
    replacement: str
    tests: Sequence[str]


MUTATIONS = [
    Mutation(
        "ddp_sums_gradients",
        "project/engine/defaults.py",
        "    return DistributedDataParallel(model, device_ids=device_ids)\n",
        "    ddp = DistributedDataParallel(model, device_ids=device_ids)\n"
        "    ddp.register_comm_hook(None, lambda _, bucket: torch.distributed.all_reduce(bucket.buffer(), "
        "async_op=True).get_future().then(lambda done: done.value()[0]))\n"
        "    return ddp\n",
        ["tests/engine/test_distributed.py"],
    ),
    Mutation(
        "evaluator_maps_classes_to_the_wrong_category_ids",
        "project/evaluation/coco_evaluation.py",
        "        return {int(contiguous): int(dataset_id) for dataset_id, contiguous in mapping.items()}\n",
        "        ids = sorted(int(dataset_id) for dataset_id in mapping)\n"
        "        return {int(contiguous): ids[-1 - int(contiguous)] for contiguous in mapping.values()}\n",
        ["tests/evaluation/test_coco_reference.py", "tests/evaluation/test_category_mapping.py"],
    ),
    Mutation(
        "resume_skips_the_optimizer_state",
        "project/engine/defaults.py",
        '        checkpointables: Dict[str, Any] = {"optimizer": optimizer, "scheduler": self.scheduler}\n',
        '        checkpointables: Dict[str, Any] = {"scheduler": self.scheduler}\n',
        ["tests/engine/test_resume.py"],
    ),
    Mutation(
        "background_first_in_inference",
        "project/modeling/roi_heads/fast_rcnn.py",
        "    class_scores = scores[:, :-1]\n",
        "    class_scores = scores[:, 1:]\n",
        ["tests/modeling/test_fast_rcnn.py", "tests/modeling/test_roi_heads.py"],
    ),
    Mutation(
        "mask_pasted_one_pixel_right",
        "project/structures/masks.py",
        "    boxes = (boxes.tensor if isinstance(boxes, Boxes) else boxes).to(torch.float32)\n",
        "    boxes = (boxes.tensor if isinstance(boxes, Boxes) else boxes).to(torch.float32)\n"
        "    boxes = boxes + torch.tensor([1.0, 0.0, 1.0, 0.0])\n",
        ["tests/structures/test_paste_masks.py", "tests/layers/test_mask_ops.py"],
    ),
]


def _export_head(destination: Path) -> None:
    """The committed tree (HEAD) unpacked into ``destination``."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(destination, filter="data")


def _run_tests(tree: Path, tests: Sequence[str]) -> dict:
    """pytest on ``tests`` inside ``tree``, importing ``project`` from ``tree``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PROJECT_DATA_ROOT": os.environ.get("PROJECT_DATA_ROOT", str(REPO.parent / "shared" / "data")),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", result.stdout, flags=re.MULTILINE)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    return {
        "exit_status": result.returncode,
        "failed": failed,
        "summary": summary,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _check_imports_from(tree: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import project; print(project.__file__)"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    if not probe.stdout.strip().startswith(str(tree)):
        raise SystemExit(f"the scratch tree's project is not the one imported: {probe.stdout.strip()}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[m.name for m in MUTATIONS], action="append", help="run these mutations")
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]
    ok = True
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as scratch:
        tree = Path(scratch)
        _export_head(tree)
        _check_imports_from(tree)
        for mutation in mutations:
            path = tree / mutation.file
            source = path.read_text()
            if source.count(mutation.original) != 1:
                raise SystemExit(f"{mutation.name}: the text to mutate is not found once in {mutation.file}")
            baseline = _run_tests(tree, mutation.tests)
            path.write_text(source.replace(mutation.original, mutation.replacement))
            try:
                mutated = _run_tests(tree, mutation.tests)
            finally:
                path.write_text(source)
            caught = baseline["exit_status"] == 0 and mutated["exit_status"] != 0 and bool(mutated["failed"])
            ok &= caught
            print(
                json.dumps({"mutation": mutation.name, "caught": caught, "unmutated": baseline, "mutated": mutated}),
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
