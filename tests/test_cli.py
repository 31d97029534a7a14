from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kexue.cli import main


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("reproduce", "report", "data", "metrics", "examples:"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "--help"],
        ["report", "--help"],
        ["data", "--help"],
        ["data", "check", "--help"],
        ["data", "prepare", "--help"],
        ["metrics", "--help"],
        ["metrics", "info", "--help"],
    ],
)
def test_every_subcommand_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: kexue" in capsys.readouterr().out


def test_train_extractor_help_is_forwarded(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", "train-extractor", "--help"])
    assert exit_info.value.code == 0
    assert "--dataset" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("kexue ")


def test_data_check_reports_every_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist", "fashion_mnist"):
        assert name in out
    assert "datasets available" in out


def test_reproduce_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--list"]) == 0
    assert "data-overview" in capsys.readouterr().out


def test_unknown_experiment_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reproduce", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err
    assert "data-overview" in err


def test_bad_device_and_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "data-overview", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path / "missing"), "data", "check"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_command_renders_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()


def test_data_prepare_rejects_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "imagenet"]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_console_script_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kexue.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("kexue ")


def test_metrics_info_prints_recorded_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "info"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out
    assert "test accuracy 0.99" in out
