"""``python -m kexue.gan.train`` and DDP under ``torchrun`` (gloo on CPU).

The equivalence test runs ``ddp_equivalence.py`` on 2 ranks: one DDP critic step (also GP's and
GN's double backward) and one generator step (GN fast and double) give the same gradients as a
single process on the union batch, to float64 round-off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kexue.gan.train import build_parser, main
from kexue.utils import load_checkpoint, read_json

HERE = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which(
    "torchrun"
)
needs_torchrun = pytest.mark.skipif(
    TORCHRUN is None or not torch.distributed.is_available(), reason="torchrun/gloo unavailable"
)


def _torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    assert TORCHRUN is not None
    env = dict(os.environ, KEXUE_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node=2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--constraint", "--data", "--steps", "--run-dir", "--device", "torchrun"):
        assert option in text


def test_single_process_cli_trains_and_resumes(tmp_path, capsys):
    args = [
        "--constraint",
        "gn",
        "--data",
        "8gaussians",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--n-critic",
        "1",
        "--log-every",
        "1",
        "--run-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--constraint-option",
        'generator_mode="double"',
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert summary["world_size"] == 1
    for name in ("checkpoint.pt", "history.json", "config.json", "generator_ema.pt"):
        assert (tmp_path / name).is_file()
    config = read_json(tmp_path / "config.json")
    assert config["constraint_options"] == {"generator_mode": "double"}
    steps = next(i for i, a in enumerate(args) if a == "--steps")
    args[steps + 1] = "3"
    assert main(args) == 0  # resumes from step 2
    assert [e["step"] for e in read_json(tmp_path / "history.json")] == [1, 2, 3]


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["--constraint", "bogus", "--run-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--constraint-option", "novalue", "--run-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="n_critic"):
        main(["--n-critic", "0", "--run-dir", str(tmp_path), "--device", "cpu"])


@needs_torchrun
def test_torchrun_two_ranks_writes_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = _torchrun(
        "-m",
        "kexue.gan.train",
        "--constraint",
        "su",
        "--data",
        "8gaussians",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--n-critic",
        "2",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--run-dir",
        str(run_dir),
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["step"] == 3
    assert checkpoint["extra"]["world_size"] == 2
    states = checkpoint["extra"]["rank_states"]
    assert len(states) == 2
    assert not torch.equal(states[0]["data"], states[1]["data"])  # ranks draw different data
    assert (run_dir / "generator_ema.pt").is_file()
    assert [e["step"] for e in read_json(run_dir / "history.json")] == [1, 2, 3]


@needs_torchrun
def test_ddp_steps_equal_single_process_union_batch(tmp_path):
    out = tmp_path / "equivalence.json"
    result = _torchrun(str(HERE / "ddp_equivalence.py"), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"none", "sn", "gp", "r1", "gn", "gn-double", "gran", "su"}
    for case, values in results.items():
        assert values["critic"] < 1e-12, case
        assert values["generator"] < 1e-12, case
    # Su's score never reaches the last bias; DDP needs it frozen (as single-process Adam keeps it)
    assert results["su"]["frozen"] == 1
    assert results["gn"]["frozen"] == 0


@pytest.mark.slow
@needs_torchrun
def test_torchrun_resume_is_bit_identical(tmp_path):
    common = [
        "-m",
        "kexue.gan.train",
        "--constraint",
        "gp",
        "--batch-size",
        "8",
        "--n-critic",
        "2",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--device",
        "cpu",
    ]
    whole = _torchrun(*common, "--steps", "4", "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    for steps in ("2", "4"):
        part = _torchrun(*common, "--steps", steps, "--run-dir", str(tmp_path / "parts"))
        assert part.returncode == 0, part.stderr[-3000:]
    first = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["objects"]
    second = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["objects"]
    for name in ("generator", "critic", "generator_ema"):
        for key, value in first[name].items():
            assert torch.equal(value, second[name][key]), (name, key)
    for name in ("data_rng", "latent_rng", "global_rng"):
        assert torch.equal(first[name], second[name])
