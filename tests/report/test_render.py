from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kexue.report import (
    ExperimentContext,
    check_at_least,
    format_cell,
    register_experiment,
    render_report,
    run_experiments,
)

pytestmark = pytest.mark.usefixtures("clean_registry")


def _figure_experiment(ctx: ExperimentContext) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(3, 2))
    axis.plot(np.arange(10), np.arange(10) ** 2, color="black", linewidth=4)
    ctx.save_figure(figure, "curve", title="A curve", caption="y = x^2")
    ctx.add_claim("C9.9", "x <b>escaped</b>", [check_at_least("value", 3.0, 1.0)])
    ctx.add_table("t", ["name", "value"], [["<script>alert(1)</script>", 1.23456789]])


def _report(tmp_path: Path) -> Path:
    register_experiment("figure-exp", title="Figure experiment")(_figure_experiment)
    run_experiments(["figure-exp"], out=tmp_path, echo=False)
    return tmp_path / "index.html"


def test_report_contains_figure_table_and_escapes_html(tmp_path: Path) -> None:
    index = _report(tmp_path)
    html = index.read_text()
    assert (tmp_path / "figure-exp" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="figure-exp/curve.png"' in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "x &lt;b&gt;escaped&lt;/b&gt;" in html
    assert "1.235" in html


def test_missing_figure_file_is_flagged(tmp_path: Path) -> None:
    _report(tmp_path)
    (tmp_path / "figure-exp" / "curve.png").unlink()
    html = render_report(tmp_path).read_text()
    assert "missing figure file curve.png" in html


def test_empty_report_says_how_to_run(tmp_path: Path) -> None:
    assert "kexue reproduce" in render_report(tmp_path).read_text()


def test_figure_filename_is_validated(tmp_path: Path) -> None:
    ctx = ExperimentContext(name="x", directory=tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        ctx.save_figure(object(), "../escape.png", title="t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.23456, "1.235"),
        (12345, "12,345"),
        (7, "7"),
        (math.nan, "nan"),
        (1e-6, "1.000e-06"),
        (None, "—"),
        (True, "yes"),
        ([1, 2.5], "[1, 2.5]"),
    ],
)
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


def _chromium() -> str | None:
    return (
        os.environ.get("KEXUE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def _headless(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "Chromium is not installed: `apt-get install chromium` (Debian) to run the browser test"
        )
    out = tmp_path / "report"
    index = _report(out)
    # The page loads and its figure decodes (a failed image is replaced by a visible message).
    dom = _headless(chromium, tmp_path / "profile1", "--dump-dom", index.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Figure experiment" in dom.stdout
    assert 'src="figure-exp/curve.png"' in dom.stdout
    assert '<p class="fail broken-figure">' not in dom.stdout
    # Negative control: the same check does catch an image that cannot load.
    broken = out / "figure-exp" / "curve.png"
    broken.write_bytes(b"not a png")
    dom = _headless(chromium, tmp_path / "profile2", "--dump-dom", index.as_uri())
    assert (
        '<p class="fail broken-figure">figure failed to load: figure-exp/curve.png</p>'
        in dom.stdout
    )
    # A screenshot of the working page is not blank.
    _report(out)
    shot = tmp_path / "page.png"
    result = _headless(
        chromium,
        tmp_path / "profile3",
        f"--screenshot={shot}",
        "--window-size=1000,1400",
        index.as_uri(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file()
    import matplotlib.image

    pixels = np.asarray(matplotlib.image.imread(shot))[..., :3]
    assert pixels.std() > 0.01  # not a uniform (empty) page
    assert (pixels < 0.2).all(axis=-1).mean() > 0.001  # dark text/lines are drawn
