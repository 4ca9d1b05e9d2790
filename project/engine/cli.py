"""Command-line conventions shared by demo.py and tools/. Options come first and Hydra config
overrides (``KEY=VALUE``, ``+experiment=...``) follow as positional arguments, as for
train_net.py; an unknown option is an error, never taken for an override. Every mistake of the
user (a bad option, override, dataset name or output folder) ends the command with one line,
``prog: error: message``, no traceback, and exit status 1: argparse's own errors through
``ArgumentParser``, the others as a ``CommandLineError`` (or another of ``USER_ERRORS``) that
``run_command`` reports."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, NoReturn, Optional, Sequence, Set, Tuple, Type

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ..config import get_cfg
from ..config.overrides import UnknownConfigKeyError, check_overrides
from ..data import BadAnnotationError, DatasetCatalog, get_detection_dataset_dicts, register_datasets_from_config
from ..utils.file_io import FileWriteError, ensure_writable_directory
from ..visualization import VisImage


class CommandLineError(ValueError):
    """Bad input from the user; reported as one message, without traceback."""


# Errors that end a command with their message and exit status 1 (see ``run_command``).
USER_ERRORS: Tuple[Type[BaseException], ...] = (
    CommandLineError,
    BadAnnotationError,
    FileWriteError,
    FileNotFoundError,
    HydraException,
    OmegaConfBaseException,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, ending a bad command line with exit status 1 (not 2), as every other user error."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``prog: error: message`` to stderr, and exit with status 1."""
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0, else an ``ArgumentTypeError`` quoting ``text``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0, else an ``ArgumentTypeError`` quoting ``text``."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number, 0 or more, else an ``ArgumentTypeError`` quoting ``text``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return value


def split_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """The options of ``argv`` parsed by ``parser``, and the rest: the config overrides. Raises
    ``CommandLineError`` for an argument starting with ``-`` that ``parser`` does not know."""
    args, overrides = parser.parse_known_args(list(argv))
    unknown = [o for o in overrides if o.startswith("-")]
    if unknown:
        raise CommandLineError(f"unknown option {unknown[0]} (see --help); config overrides are written KEY=VALUE")
    return args, overrides


def load_config(overrides: Sequence[str]) -> DictConfig:
    """The configs/ tree composed with Hydra ``overrides``, its ``DATASETS.REGISTER`` entries
    registered. Raises ``CommandLineError`` for an unknown key (naming the valid ones) or an
    entry that cannot be registered; Hydra's own errors for the rest."""
    try:
        check_overrides(list(overrides))
    except UnknownConfigKeyError as error:
        raise CommandLineError(str(error)) from None
    cfg = get_cfg(list(overrides))
    try:
        register_datasets_from_config(cfg)
    except (ValueError, TypeError) as error:
        raise CommandLineError(str(error)) from None
    return cfg


def require_dataset_name(requested: Optional[str], default_names: Sequence[str], config_key: str) -> str:
    """``requested``, else the first of ``default_names`` (the value of ``config_key``). Raises
    ``CommandLineError`` when there is none, or when it is not registered (naming those that are)."""
    name = requested or (default_names[0] if default_names else None)
    if name is None:
        raise CommandLineError(f"no dataset given: pass --dataset NAME or set {config_key} (it is empty)")
    if name not in DatasetCatalog:
        raise CommandLineError(
            f"dataset '{name}' is not registered. Registered datasets: {', '.join(sorted(DatasetCatalog))}. "
            "Register it with a DATASETS.REGISTER entry or an experiment (e.g. +experiment=finetune_dsb2018)."
        )
    return name


def prepare_output_dir(directory: str, option: str = "--output-dir") -> None:
    """Create ``directory`` if needed; raises ``CommandLineError``, naming ``option``, when no
    file can be written there."""
    try:
        ensure_writable_directory(directory)
    except FileWriteError as error:
        raise CommandLineError(f"{option} {directory}: {error}") from None


def load_dataset(cfg: DictConfig, name: str, filter_empty: bool = False, need_dicts: bool = True) -> Any:
    """The dataset dicts of registered dataset ``name`` (a torch dataset too, unless
    ``need_dicts``), loaded under ``cfg.DATALOADER.ON_BAD_ANNOTATION``. Raises
    ``CommandLineError`` when its files cannot be read, when no image is left, or when
    ``need_dicts`` and it is a torch dataset."""
    try:
        dataset = get_detection_dataset_dicts([name], filter_empty, on_bad_annotation=cfg.DATALOADER.ON_BAD_ANNOTATION)
    except ValueError as error:  # BadAnnotationError (a malformed file) included
        raise CommandLineError(str(error)) from None
    if isinstance(dataset, list) and not dataset:
        raise CommandLineError(f"dataset '{name}' has no images" + (" with annotations" if filter_empty else ""))
    if need_dicts and not isinstance(dataset, list):
        raise CommandLineError(f"dataset '{name}' is a torch dataset, not a list of dataset dicts")
    return dataset


def picture_path(directory: str, stem: str, taken: Set[str]) -> str:
    """``directory/<stem>.png``, with ``_1``, ``_2``, ... added when ``taken`` (the names this
    run wrote, updated here) already holds that name."""
    name, k = stem, 0
    while name in taken:
        k += 1
        name = f"{stem}_{k}"
    taken.add(name)
    return os.path.join(directory, name + ".png")


def save_picture(picture: VisImage, path: str) -> None:
    """Write ``picture`` to ``path``; raises ``CommandLineError`` naming the file when it cannot."""
    try:
        picture.save(path)
    except OSError as error:
        raise CommandLineError(str(error)) from None


def run_command(
    main: Callable[[Sequence[str]], Any],
    argv: Sequence[str],
    prog: str,
    errors: Tuple[Type[BaseException], ...] = USER_ERRORS,
) -> int:
    """Call ``main(argv)`` and return the exit status: 0, or 1 after printing
    ``prog: error: message`` to stderr when it raised one of ``errors``."""
    try:
        main(argv)
    except errors as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return 0
