"""Attach a checkpoint's short names to a model's full names by suffix matching.

Pretrained weights usually name a parameter relative to the network they came from
(``res2.0.conv1.weight``), while the model nests that network deeper
(``backbone.bottom_up.res2.0.conv1.weight``). A checkpoint key *matches* a model key when it is
the whole model key or a suffix of it that starts at a ``.`` boundary (so ``conv1.weight``
matches ``stem.conv1.weight`` but ``1.weight`` never matches ``fc1.weight``). Each model key
takes its longest matching checkpoint key; a checkpoint key chosen by two model keys is
ambiguous and is an error.
"""

from __future__ import annotations

from typing import Collection, Dict, Optional

from .errors import CheckpointMismatchError


def _longest_matching_suffix(model_key: str, checkpoint_keys: Collection[str]) -> Optional[str]:
    parts = model_key.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        if candidate in checkpoint_keys:
            return candidate
    return None


def match_by_suffix(
    model_keys: Collection[str], checkpoint_keys: Collection[str], *, source: str = "checkpoint"
) -> Dict[str, str]:
    """``{checkpoint key: model key}`` for every checkpoint key that is the longest matching
    suffix of some model key (see the module docstring); unmatched checkpoint keys are absent.

    Raises:
        CheckpointMismatchError: one checkpoint key is the best match of two model keys
            (``source``, the checkpoint's name, is given in the message).
    """
    available = set(checkpoint_keys)
    model_key_of: Dict[str, str] = {}
    for model_key in sorted(model_keys):
        checkpoint_key = _longest_matching_suffix(model_key, available)
        if checkpoint_key is None:
            continue
        if checkpoint_key in model_key_of:
            raise CheckpointMismatchError(
                f"{source}: checkpoint key {checkpoint_key!r} matches both model keys "
                f"{model_key_of[checkpoint_key]!r} and {model_key!r}; cannot tell which one it "
                "belongs to. Rename the checkpoint keys to the model's full names."
            )
        model_key_of[checkpoint_key] = model_key
    return model_key_of
