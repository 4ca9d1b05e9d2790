"""What happens to bad input: a malformed file, an impossible annotation, an unreadable image.

Every problem is described by a ``BadAnnotationError`` naming the file, the item (annotation id,
image id, mask file, ...) and what was expected. The policy (``cfg.DATALOADER.ON_BAD_ANNOTATION``)
is either "error", which raises it, or "skip", which drops the item, logs it (the first few
individually) and counts it; ``BadInputLog.summarize`` reports the count per kind of problem.

Loaders read the policy from an explicit ``on_bad_annotation=`` argument, else from the
innermost ``bad_annotation_policy(...)`` context (which the data loader builders open with the
config's value), else "skip".
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from contextvars import ContextVar
from typing import Iterator, Optional

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
KIND_INVALID = "invalid annotation"

_policy: ContextVar[str] = ContextVar("on_bad_annotation", default=DEFAULT_ON_BAD_ANNOTATION)


class BadAnnotationError(ValueError):
    """Bad input in ``file``: ``item`` (e.g. "annotation id 12") is wrong because ``reason``."""

    def __init__(self, file: str, item: str, reason: str, kind: Optional[str] = None):
        self.file = str(file)
        self.item = item
        self.reason = reason
        self.kind = kind or reason
        super().__init__(f"{self.file}: {item}: {reason}")


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


class BadInputLog:
    """Applies the bad-input policy while one source (a dataset, a mapper) is read.

    ``report`` raises the error in "error" mode; in "skip" mode it logs a warning (the first
    few individually) and counts the problem, and the caller drops the item.
    """

    def __init__(self, source: str, mode: Optional[str] = None, logger: Optional[logging.Logger] = None):
        self.source = source
        self.mode = current_policy(mode)
        self.logger = logger or logging.getLogger(__name__)
        self.counts: Counter = Counter()

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    def report(self, error: BadAnnotationError) -> None:
        if self.mode == "error":
            raise error
        self.counts[error.kind] += 1
        if self.num_skipped <= _LOGGED_INDIVIDUALLY:
            self.logger.warning("%s: skipped bad input: %s", self.source, error)
        elif self.num_skipped == _LOGGED_INDIVIDUALLY + 1:
            self.logger.warning("%s: more bad input; further items are only counted", self.source)

    def summarize(self) -> None:
        """Log how many items were skipped, per kind of problem (nothing when none were)."""
        if not self.counts:
            return
        kinds = "; ".join(f"{n} x {kind}" for kind, n in self.counts.most_common())
        self.logger.warning(
            "%s: skipped %d bad item(s) (on_bad_annotation='skip'): %s", self.source, self.num_skipped, kinds
        )
