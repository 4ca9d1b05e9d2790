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

import logging
from typing import Collection, Dict, Mapping, Optional, TypeVar

from .errors import CheckpointMismatchError

logger = logging.getLogger(__name__)

Value = TypeVar("Value")


def _longest_matching_suffix(model_key: str, checkpoint_keys: Collection[str]) -> Optional[str]:
    parts = model_key.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        if candidate in checkpoint_keys:
            return candidate
    return None


def align_and_update_state_dicts(
    model_state_dict: Mapping[str, object],
    checkpoint_state_dict: Mapping[str, Value],
    *,
    source: str = "checkpoint",
) -> Dict[str, Value]:
    """Rename checkpoint entries to the model keys they match (see the module docstring).

    Shapes are not compared here; the loader reports shape mismatches. Checkpoint entries that
    match no model key are returned under their own names, so they are reported as unused.

    Args:
        model_state_dict: the model's state dict (only its keys are used).
        checkpoint_state_dict: name -> value, with names relative to some submodule.
        source: the checkpoint's file name, used in error messages.

    Raises:
        CheckpointMismatchError: one checkpoint key is the best match of two model keys.
    """
    checkpoint_keys = set(checkpoint_state_dict)
    model_key_of: Dict[str, str] = {}  # checkpoint key -> model key it was matched to
    for model_key in sorted(model_state_dict):
        checkpoint_key = _longest_matching_suffix(model_key, checkpoint_keys)
        if checkpoint_key is None:
            continue
        if checkpoint_key in model_key_of:
            raise CheckpointMismatchError(
                f"{source}: checkpoint key {checkpoint_key!r} matches both model keys "
                f"{model_key_of[checkpoint_key]!r} and {model_key!r}; cannot tell which one it "
                "belongs to. Rename the checkpoint keys to the model's full names."
            )
        model_key_of[checkpoint_key] = model_key

    aligned = {model_key_of.get(key, key): value for key, value in checkpoint_state_dict.items()}
    renamed = sum(key != model_key for key, model_key in model_key_of.items())
    logger.info(
        "%s: matched %d of %d checkpoint keys to model keys by name suffix (%d renamed)",
        source,
        len(model_key_of),
        len(checkpoint_state_dict),
        renamed,
    )
    return aligned
