"""benchmarks/soak.py on a few frames: one live ``test://`` camera through the single-camera pipeline or several
through MultiCamera, and the figures it writes: every camera's frames accounted for and the totals their sums."""
from __future__ import annotations

import json
from pathlib import Path

import onnx  # noqa: F401  loaded before GStreamer initialises (see runtime/gst.py)
import onnxruntime  # noqa: F401
import pytest

from benchmarks.soak import main as soak
from runtime.gst import MediaError, gst

try:
    gst()
except MediaError:
    pytest.skip("GStreamer/PyGObject not installed (scripts/setup.sh installs them)", allow_module_level=True)

FRAMES = 400  # per camera, the fewest a soak takes (memory is measured from the 200th): a second at RATE
RATE = 400


@pytest.mark.parametrize("cameras", [1, 3])
def test_soak_accounts_for_every_frame_of_every_camera(cameras: int, tiny_graphs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    assert soak(["--model", str(tiny_graphs["portable"]), "--cameras", str(cameras), "--frames", str(FRAMES),
                 "--rate", str(RATE), "--json", str(figures)]) == 0
    result = json.loads(figures.read_text())
    per_camera = result["per_camera"]
    assert result["cameras"] == len(per_camera) == cameras
    assert len({camera["input"] for camera in per_camera}) == cameras  # a pattern of its own each
    for camera in per_camera:
        # a live camera's frame is either inferred or dropped by its queue, and every inferred one is written
        assert camera["captured"] == FRAMES == camera["processed"] + camera["dropped"]
        assert camera["written"] == camera["processed"] > 0
        assert {"p50_ms", "p99_ms"} <= set(camera["stages_ms"]["end_to_end"])
    for total, counter in (("frames", "captured"), ("processed", "processed"), ("dropped", "dropped"),
                           ("lost_upstream", "lost_upstream"), ("written", "written")):
        assert result[total] == sum(camera[counter] for camera in per_camera), total
    assert result["fps_out"] == pytest.approx(sum(camera["fps_out"] for camera in per_camera), abs=0.01 * cameras)
    rss = result["rss_mib"]
    assert 0 < min(rss["start"], rss["middle"], rss["end"]) and max(rss["start"], rss["end"]) <= rss["max"]
    assert result["rss_growth_start_to_end"] == pytest.approx(rss["end"] / rss["start"] - 1, abs=1e-3)
    assert result["source"].startswith(f"{cameras} x test://")
    assert result["command"] == f"dannet-bench soak --model {tiny_graphs['portable']} --cameras {cameras} " \
                                f"--frames {FRAMES} --rate {RATE} --json {figures}"
    assert result["date"][:4].isdigit() and result["machine"]["cores"] >= 1


def test_several_cameras_cannot_share_one_output_file(tiny_graphs: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        soak(["--model", str(tiny_graphs["portable"]), "--cameras", "2", "--output", str(tmp_path / "soak.mp4")])
    assert exit_.value.code == 2 and "several cameras cannot share one output" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--rate", "nan"], ["--rate", "inf"], ["--rate", "0"], ["--rate", "-5"],
                                  ["--frames", "399"]])
def test_a_rate_that_is_no_rate_or_too_few_frames_is_one_line(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    """Too few frames: the memory figures, taken from the 200th frame on, would read the same sample twice."""
    with pytest.raises(SystemExit) as exit_:
        soak(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and argv[0] in err
