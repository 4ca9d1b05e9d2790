"""``project.engine.cli``: the command-line conventions of demo.py and tools/ (exit status 1 and
``prog: error: message`` for every user error, options before Hydra overrides)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from project.data import DatasetCatalog
from project.engine.cli import (
    ArgumentParser,
    CommandLineError,
    load_config,
    non_negative_int,
    picture_path,
    positive_int,
    prepare_output_dir,
    require_dataset_name,
    run_command,
    split_overrides,
)


def parser() -> ArgumentParser:
    built = ArgumentParser(prog="tool.py")
    built.add_argument("--num", type=int)
    built.add_argument("--no-labels", action="store_true")
    return built


def test_a_bad_option_value_exits_with_status_1_and_one_message(capsys):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--num", "many"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("usage: tool.py")
    assert "tool.py: error: argument --num: invalid int value: 'many'" in err


def test_options_are_split_from_overrides_and_an_unknown_option_is_an_error():
    args, overrides = split_overrides(parser(), ["--num", "3", "+experiment=x", "SEED=1", "--no-labels"])
    assert args.num == 3 and args.no_labels
    assert overrides == ["+experiment=x", "SEED=1"]
    with pytest.raises(CommandLineError, match="unknown option --nmu .*KEY=VALUE"):
        split_overrides(parser(), ["--nmu", "3", "SEED=1"])
    with pytest.raises(CommandLineError, match="unknown option -x"):
        split_overrides(parser(), ["-x"])


@pytest.fixture
def registered():
    name = "test_cli_registered"
    DatasetCatalog.register(name, list)
    yield name
    DatasetCatalog.pop(name, None)


def test_the_dataset_name_must_be_registered(registered):
    assert require_dataset_name(None, [registered, "other"], "DATASETS.TEST") == registered
    assert require_dataset_name(registered, [], "DATASETS.TEST") == registered
    with pytest.raises(CommandLineError, match="no dataset given: .*set DATASETS.TRAIN"):
        require_dataset_name(None, [], "DATASETS.TRAIN")
    with pytest.raises(CommandLineError) as raised:
        require_dataset_name("no_such_dataset", [registered], "DATASETS.TEST")
    message = str(raised.value)
    assert "dataset 'no_such_dataset' is not registered" in message
    assert registered in message.split("Registered datasets:")[1]


def test_an_unknown_config_key_names_the_valid_ones():
    with pytest.raises(CommandLineError, match="Valid keys under INPUT"):
        load_config(["INPUT.FROMAT=RGB"])


def test_an_output_dir_that_cannot_be_created_names_its_option(tmp_path):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    prepare_output_dir(str(tmp_path / "new"))
    assert (tmp_path / "new").is_dir()
    with pytest.raises(CommandLineError, match=f"^--output {in_the_way / 'sub'}: "):
        prepare_output_dir(str(in_the_way / "sub"), "--output")


def test_picture_paths_are_unique_within_a_run(tmp_path):
    taken: set = set()
    paths = [picture_path(str(tmp_path), "img", taken) for _ in range(3)]
    assert [Path(p).name for p in paths] == ["img.png", "img_1.png", "img_2.png"]


def test_run_command_reports_user_errors_and_lets_bugs_through(capsys):
    def main(argv):
        if argv == ["bad"]:
            raise CommandLineError("--input x: no such file")
        if argv == ["bug"]:
            raise argparse.ArgumentError(None, "not a user error here")

    assert run_command(main, ["fine"], "tool.py") == 0
    assert run_command(main, ["bad"], "tool.py") == 1
    assert capsys.readouterr().err == "tool.py: error: --input x: no such file\n"
    with pytest.raises(argparse.ArgumentError):
        run_command(main, ["bug"], "tool.py")


def test_whole_number_option_types_tell_the_bad_value(capsys):
    built = ArgumentParser(prog="tool.py")
    built.add_argument("--num", type=positive_int)
    built.add_argument("--index", type=non_negative_int)
    assert vars(built.parse_args(["--num", "3", "--index", "0"])) == {"num": 3, "index": 0}
    for argv, message in (
        (["--num", "0"], "argument --num: must be a positive whole number, got '0'"),
        (["--num", "two"], "argument --num: must be a positive whole number, got 'two'"),
        (["--index", "-1"], "argument --index: must be a whole number, 0 or more, got '-1'"),
    ):
        with pytest.raises(SystemExit) as exited:
            built.parse_args(argv)
        assert exited.value.code == 1
        assert f"tool.py: error: {message}" in capsys.readouterr().err
