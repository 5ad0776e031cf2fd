"""Frames from a GStreamer source stay what was captured for as long as the run keeps them, whichever Python
binding of GStreamer is loaded.

With pip's PyGObject alone, ``Gst.Buffer.map`` copies the mapped memory into a bytes object. gst-python's
overrides (``apt install python3-gst-1.0``, present wherever the OS PyGObject is: Debian, Ubuntu, JetPack,
DeepStream) replace ``map``: its data is then a view of GStreamer's pool memory, which ``unmap`` hands back and
later frames reuse. The overrides are loaded in a fresh interpreter (a process that has imported ``Gst`` keeps
the binding it has), from where the OS package installed them, for this interpreter's PyGObject.

The expected frames are decoded by ``gst-launch-1.0`` into a raw file: GStreamer's own tool, not the runtime's
source code, through the same decode, conversion and scaling elements.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: an odd width, so that every RGB row of a frame is padded in GStreamer's buffers: 3 * 161 = 483 bytes of pixels
#: in rows of ROW_BYTES (GStreamer's RGB rows take a multiple of 4 bytes)
FRAME_H, FRAME_W, FRAMES, ROW_BYTES = 121, 161, 30, 484
#: where OS packages put gst-python's overrides: Debian/Ubuntu/JetPack, then Fedora, then Arch
OVERRIDES_FOLDERS = (Path("/usr/lib/python3/dist-packages/gi/overrides"),
                     Path(f"/usr/lib64/python{sysconfig.get_python_version()}/site-packages/gi/overrides"),
                     Path(f"/usr/lib/python{sysconfig.get_python_version()}/site-packages/gi/overrides"))

#: the run: every frame of the video through GstSource, all kept (as queues keep them) until the source ends
READ_EVERY_FRAME = """
import sys
import numpy as np
from runtime.gst import gst
from runtime.sources import CaptureOptions, open_source
from runtime.uris import parse_input
video, out, binding, height, width = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
loaded = gst().Buffer.map.__module__
assert loaded == binding, f"Gst.Buffer.map comes from {loaded}, not {binding}"
source, frames = open_source(parse_input(video), CaptureOptions(size=(height, width))), []
while not source.ended:
    frame = source.read(5.0)
    if frame is not None:
        frames.append(frame.image)
np.save(out, np.stack(frames))
source.close()
"""

pytestmark = pytest.mark.skipif(shutil.which("gst-launch-1.0") is None or importlib.util.find_spec("gi") is None,
                                reason="GStreamer/PyGObject not installed (scripts/setup.sh installs them)")


def gst_launch(*description: str) -> None:
    subprocess.run(["gst-launch-1.0", "-q", *description], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def video_and_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A video of a moving ball (every frame different) and its frames at FRAME_H x FRAME_W, decoded by
    gst-launch-1.0 as the runtime's source decodes it (decodebin, videoconvert, videoscale, RGB)."""
    folder = tmp_path_factory.mktemp("gst-memory")
    video, raw = folder / "ball.mkv", folder / "frames.rgb"
    gst_launch("videotestsrc", f"num-buffers={FRAMES}", "pattern=ball", "!",
               "video/x-raw,width=160,height=120,framerate=30/1", "!", "videoconvert", "!", "x264enc", "!",
               "matroskamux", "!", "filesink", f"location={video}")
    gst_launch("filesrc", f"location={video}", "!", "decodebin", "!", "videoconvert", "!", "videoscale", "!",
               f"video/x-raw,format=RGB,width={FRAME_W},height={FRAME_H}", "!", "filesink", f"location={raw}")
    rows = np.fromfile(raw, np.uint8).reshape(-1, FRAME_H, ROW_BYTES)[:, :, : 3 * FRAME_W]
    frames = rows.reshape(-1, FRAME_H, FRAME_W, 3)
    assert len(frames) == FRAMES and len({frame.tobytes() for frame in frames}) == FRAMES  # all different
    return video, frames


def gst_python_overrides() -> Path | None:
    """The OS package's gst-python overrides folder, if it holds the extension built for this interpreter."""
    for folder in OVERRIDES_FOLDERS:
        extension = any((folder / f"_gi_gst{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)
        if (folder / "Gst.py").is_file() and extension:
            return folder
    return None


def with_gst_python_overrides(root: Path) -> dict[str, str]:
    """An environment whose ``gi.overrides`` takes in gst-python's overrides, and only them: their files linked
    into ``root/gi/overrides`` (PyGObject adds every ``gi/overrides`` folder on the path to its own); the OS
    folder holds the OS PyGObject's overrides too, which must not mix with this interpreter's PyGObject."""
    folder = gst_python_overrides()
    if folder is None:
        pytest.skip(f"gst-python's overrides for Python {sysconfig.get_python_version()} not installed "
                    "(apt install python3-gst-1.0; scripts/setup.sh installs it)")
    linked = root / "gi" / "overrides"
    linked.mkdir(parents=True)
    for path in [*folder.glob("Gst*.py"), *folder.glob("_gi_gst*")]:
        (linked / path.name).symlink_to(path)
    return {**os.environ, "PYTHONPATH": str(root)}


@pytest.mark.parametrize("binding", ["gi.repository.Gst", "gi.overrides.Gst"])
def test_frames_read_stay_the_frames_captured_until_the_run_ends(
        binding: str, video_and_frames: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    """GstSource reads every frame of a video and the run keeps them all; at the end each is still its frame of
    the independent decode, under pip's PyGObject alone and under gst-python's overrides."""
    video, expected = video_and_frames
    env = with_gst_python_overrides(tmp_path) if binding == "gi.overrides.Gst" else dict(os.environ)
    out = tmp_path / "frames.npy"
    subprocess.run([sys.executable, "-c", READ_EVERY_FRAME, str(video), str(out), binding, str(FRAME_H),
                    str(FRAME_W)], cwd=REPO, env=env, check=True, timeout=60)
    frames = np.load(out)
    assert frames.shape == expected.shape
    unchanged = [i for i in range(FRAMES) if np.array_equal(frames[i], expected[i])]
    assert unchanged == list(range(FRAMES)), f"only frames {unchanged} of {FRAMES} are still what was captured"
