"""What happens to bad input: a malformed file, an impossible annotation, an unreadable image.

Every problem is described by a ``BadAnnotationError`` naming the file, the item (annotation id,
image id, mask file, ...) and what was expected. The policy (``cfg.DATALOADER.ON_BAD_ANNOTATION``)
is either "error", which raises it, or "skip", which drops the item, logs it (the first few
individually) and counts it; ``BadInputLog.summarize`` reports the count per kind of problem.

Loaders read the policy from an explicit ``on_bad_annotation=`` argument, else from the
innermost ``bad_annotation_policy(...)`` context (which the data loader builders open with the
config's value), else "skip". What a dataset's last load skipped stays available from
``skipped_when_loaded(name)``, for the summaries at the end of training and evaluation.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from contextvars import ContextVar
from typing import Dict, Iterator, Optional

import torch
from torch.utils.data import get_worker_info

ON_BAD_ANNOTATION_CHOICES = ("skip", "error")
DEFAULT_ON_BAD_ANNOTATION = "skip"
_LOGGED_INDIVIDUALLY = 10

# Kinds of bad input, as counted in the summaries.
KIND_MALFORMED_JSON = "malformed JSON"
KIND_SHORT_POLYGON = "polygon with fewer than 3 points"
KIND_BOX_OUTSIDE = "box outside the image"
KIND_MISSING_IMAGE = "missing image file"
KIND_MISSING_MASK = "missing mask file"
KIND_CORRUPT_IMAGE = "corrupt image file"
KIND_MASK_SIZE = "mask size differs from its image"
KIND_IMAGE_SIZE = "image size differs from its annotations"
KIND_MASK_BOX = "mask far from its box"
KIND_INVALID = "invalid annotation"
KINDS = (
    KIND_MALFORMED_JSON,
    KIND_SHORT_POLYGON,
    KIND_BOX_OUTSIDE,
    KIND_MISSING_IMAGE,
    KIND_MISSING_MASK,
    KIND_CORRUPT_IMAGE,
    KIND_MASK_SIZE,
    KIND_IMAGE_SIZE,
    KIND_MASK_BOX,
    KIND_INVALID,
)

# Rows of a shared count table: one for the process that made it, one per data loader worker id
# below this number (workers with higher ids share rows, and may then, rarely, lose a count).
_WORKER_ROWS = 256

_policy: ContextVar[str] = ContextVar("on_bad_annotation", default=DEFAULT_ON_BAD_ANNOTATION)
_skipped_at_last_load: Dict[str, Counter] = {}


class BadAnnotationError(ValueError):
    """Bad input in ``file``: ``item`` (e.g. "annotation id 12") is wrong because ``reason``.

    It pickles with its fields, so a data loader worker can hand it to the main process."""

    def __init__(self, file: str, item: str, reason: str, kind: Optional[str] = None):
        self.file = str(file)
        self.item = item
        self.reason = reason
        self.kind = kind or reason
        super().__init__(f"{self.file}: {item}: {reason}")

    def __reduce__(self):
        return type(self), (self.file, self.item, self.reason, self.kind)


def check_policy(mode: str) -> str:
    if mode not in ON_BAD_ANNOTATION_CHOICES:
        raise ValueError(f"on_bad_annotation must be one of {ON_BAD_ANNOTATION_CHOICES}, got {mode!r}")
    return mode


def current_policy(explicit: Optional[str] = None) -> str:
    """``explicit`` if given, else the innermost ``bad_annotation_policy`` context's, else "skip"."""
    return check_policy(explicit if explicit is not None else _policy.get())


@contextlib.contextmanager
def bad_annotation_policy(mode: str) -> Iterator[None]:
    """Within this context, loaders without an explicit policy use ``mode``."""
    token = _policy.set(check_policy(mode))
    try:
        yield
    finally:
        _policy.reset(token)


def skipped_when_loaded(dataset_name: str) -> Counter:
    """Items skipped per kind of problem the last time this process loaded ``dataset_name``
    (empty when nothing was skipped, or the dataset was not loaded)."""
    return Counter(_skipped_at_last_load.get(dataset_name, {}))


def describe_counts(counts: Counter) -> str:
    """The counts as text, largest first, e.g. ``3 x missing image file; 1 x corrupt image file``."""
    return "; ".join(f"{n} x {kind}" for kind, n in counts.most_common())


class SharedCounts:
    """Counts per kind of problem that the copies of an object in data loader worker processes
    all add to (the copies of a plain ``Counter`` would each count on their own).

    The table lives in shared memory, which forked workers inherit and spawned ones receive
    with the object. Each process adds only to its own row (row 0: a process that is no
    worker, row 1 + k: worker k), so no count is lost to concurrent updates and no lock is
    needed. Kinds outside ``KINDS`` are counted as ``KIND_INVALID``.
    """

    def __init__(self) -> None:
        self._table = torch.zeros((1 + _WORKER_ROWS, len(KINDS)), dtype=torch.int64).share_memory_()

    def add(self, kind: str) -> None:
        worker = get_worker_info()
        row = 0 if worker is None else 1 + worker.id % _WORKER_ROWS
        self._table[row, KINDS.index(kind if kind in KINDS else KIND_INVALID)] += 1

    def totals(self) -> Counter:
        """The counts of all processes together, per kind."""
        return Counter({kind: n for kind, n in zip(KINDS, self._table.sum(dim=0).tolist()) if n})


class BadInputLog:
    """Applies the bad-input policy while one source (a dataset, a mapper) is read.

    ``report`` raises the error in "error" mode; in "skip" mode it logs a warning (the first
    few in each process individually) and counts the problem, and the caller drops the item.
    With ``shared``, the counts of the copies of this log in data loader workers add up in
    ``counts`` (see ``SharedCounts``). With ``dataset_name``, ``summarize`` also keeps the
    counts for ``skipped_when_loaded``.
    """

    def __init__(
        self,
        source: str,
        mode: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        *,
        shared: bool = False,
        dataset_name: Optional[str] = None,
    ):
        self.source = source
        self.mode = current_policy(mode)
        self.logger = logger or logging.getLogger(__name__)
        self.dataset_name = dataset_name
        self._in_this_process = 0
        self._counts: Counter = Counter()
        self._shared = SharedCounts() if shared else None

    @classmethod
    def for_dataset(
        cls, dataset_name: Optional[str], path: str, mode: Optional[str], logger: logging.Logger
    ) -> BadInputLog:
        """The log of one load of a dataset, named ``dataset_name`` (else by its file or folder
        ``path``); its summary is kept for ``skipped_when_loaded`` under that name."""
        name = dataset_name or path
        return cls(f"dataset '{name}'", mode, logger, dataset_name=name)

    @property
    def counts(self) -> Counter:
        """Skipped items per kind of problem (of all processes, when shared)."""
        return self._shared.totals() if self._shared is not None else Counter(self._counts)

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    def report(self, error: BadAnnotationError) -> None:
        if self.mode == "error":
            raise error
        self._in_this_process += 1
        if self._shared is not None:
            self._shared.add(error.kind)
        else:
            self._counts[error.kind] += 1
        if self._in_this_process <= _LOGGED_INDIVIDUALLY:
            self.logger.warning("%s: skipped bad input: %s", self.source, error)
        elif self._in_this_process == _LOGGED_INDIVIDUALLY + 1:
            self.logger.warning(
                "%s: more bad input; further items are only counted, and the count is logged at the end", self.source
            )

    def summarize(self) -> None:
        """Log how many items were skipped, per kind of problem (nothing when none were)."""
        counts = self.counts
        if self.dataset_name is not None:
            _skipped_at_last_load[self.dataset_name] = counts
        if not counts:
            return
        self.logger.warning(
            "%s: skipped %d bad item(s) (on_bad_annotation='skip'): %s",
            self.source,
            sum(counts.values()),
            describe_counts(counts),
        )
