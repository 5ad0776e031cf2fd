"""The RTSP output (``rtsp://@:PORT/NAME``) as its clients and its run see it: clients are real ``rtspsrc``
pipelines in ``gst-launch-1.0`` processes; the port is checked with plain sockets.

- the queue of pictures waiting for the encoder stays bounded however fast they come, and the pictures let go
  are counted exactly;
- pictures of odd sizes are served (4:2:0 encoders refuse odd sizes);
- the sinks serving a client send pictures as they come (paced by timestamps, a race stalled some streams);
- an error in the media serving the clients stops the run instead of every client failing unseen;
- the port is checked when the URI is parsed, and freed when the output closes.
"""
from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import onnx  # noqa: F401  loaded before GStreamer initialises (see runtime/gst.py)
import onnxruntime  # noqa: F401
import pytest
from test_errors import USAGE, in_process, the_error

from runtime.gst import MediaError, gst
from runtime.sinks import RtspSink
from runtime.sources import Frame
from runtime.uris import parse_output

try:
    RtspSink(parse_output("rtsp://@:8554/probe"))
except MediaError as e:
    pytest.skip(f"no RTSP server here ({e}); scripts/setup.sh installs it", allow_module_level=True)

#: how long a client may take to connect, or to play what it was asked to
CLIENT_S = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a plain listening socket (no SO_REUSEADDR) can take ``port`` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
        return True


class Viewer:
    """An RTSP client (``gst-launch-1.0 rtspsrc``) that decodes ``frames`` pictures of rtsp://127.0.0.1:PORT/x and
    exits. Its output is read as it comes: -v reports every picture (how ``decoded`` counts them) and rtspsrc's
    statistics, over 50 KB for 60 pictures, and a pipe left unread stops a client that fills it."""

    def __init__(self, port: int, frames: int, protocol: str = "tcp") -> None:
        self.process = subprocess.Popen(["gst-launch-1.0", "-v", "rtspsrc", f"location=rtsp://127.0.0.1:{port}/x",
                                         "latency=0", f"protocols={protocol}", "!", "decodebin", "!", "fakesink",
                                         "silent=false", f"num-buffers={frames}"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def exited(self) -> bool:
        return self.process.poll() is not None

    def decoded(self) -> int:
        """The pictures decoded, once the client has exited. Counted from fakesink's report of each, not from the
        exit code: about 1 rtspsrc in 100 exits 1 after all its pictures and its end of stream, when it sends
        PAUSE on the connection its own TEARDOWN had the server close (measured: 4 in 400 connections, GStreamer
        1.22)."""
        self.process.wait(CLIENT_S)
        self.reader.join(CLIENT_S)
        return sum("last-message = chain" in line for line in self.lines)

    def kill(self) -> None:
        self.process.kill()
        self.reader.join(CLIENT_S)


def started(width: int, height: int) -> tuple[RtspSink, int]:
    port = free_port()
    sink = RtspSink(parse_output(f"rtsp://@:{port}/x"), "h264", 4000, say=lambda line: None)
    sink.start(width, height, Fraction(30))
    return sink, port


def write_until(sink: RtspSink, picture: np.ndarray, done: Callable[[], bool], seconds: float = CLIENT_S) -> None:
    """Write ``picture`` at 30 per second until ``done()`` or ``seconds`` have passed."""
    frame, deadline = Frame(picture, 0, 0.0, 0.0), time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        sink.write(picture, frame, 0.0)
        time.sleep(1 / 30)


def wait_until(done: Callable[[], bool], seconds: float = CLIENT_S) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_pictures_faster_than_the_encoder_wait_two_at_most_the_others_are_counted_and_the_client_plays() -> None:
    """With a client connected and the stream flowing, 200 pictures written as fast as Python can (far faster
    than x264 encodes 640x480 on a CPU): the pictures waiting in the stream's appsrc, read from GStreamer after
    every write, reach two (the writer was ahead) and never more; the pictures ``write`` took are exactly those a
    probe on the appsrc's output pad saw leave it once the queue has drained (the others, which it said it let go,
    never did); the client still decodes its pictures."""
    Gst = gst()
    sink, port = started(640, 480)
    picture = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame, left = Frame(picture, 0, 0.0, 0.0), [0]

    def count(pad, info) -> Gst.PadProbeReturn:
        left[0] += 1
        return Gst.PadProbeReturn.OK

    def drained() -> bool:  # nothing waits, and the last picture taken has passed the probe
        wait_until(lambda: appsrc.get_property("current-level-buffers") == 0)
        time.sleep(0.1)
        return appsrc.get_property("current-level-buffers") == 0

    def state() -> str:
        """What the server and the client were doing, for a failure's message."""
        return (f"{appsrc.get_property('current-level-buffers')} waiting, {left[0]} sent, playing {sink.playing}, "
                f"media kept {sink.appsrc is appsrc}, client exit code {viewer.process.poll()}, client's last "
                f"lines: {viewer.lines[-6:]}")

    viewer = Viewer(port, frames=60)
    try:
        wait_until(lambda: sink.appsrc is not None)
        appsrc = sink.appsrc
        appsrc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, count)
        write_until(sink, picture, lambda: sink.playing and left[0] > 2)
        assert sink.playing and drained(), state()
        before, waiting, sent = left[0], [], []
        for _ in range(200):
            sent.append(sink.write(picture, frame, 0.0))
            waiting.append(appsrc.get_property("current-level-buffers"))
        assert max(waiting) == 2, f"pictures waiting for the encoder reached {max(waiting)}"
        assert drained() and sink.appsrc is appsrc, state()  # drained, not thrown away with the media
        assert sent.count(False) > 0 and left[0] - before == sent.count(True)
        write_until(sink, picture, viewer.exited)
        assert viewer.decoded() == 60
    finally:
        viewer.kill()
        sink.close()


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_the_sinks_serving_a_client_send_pictures_as_they_come(protocol: str) -> None:
    """The sinks the server adds for a client (an appsink for TCP, a multiudpsink for UDP) do not wait for the
    pictures' timestamps, and the client plays. Waiting, one connection in 30-110 on a busy machine never started
    flowing: the picture encoded while the media prerolled for DESCRIBE reached its sink after PLAY with a running
    time far ahead of the clock, and the sink waited for it (a backtrace of the stall: the appsrc's streaming
    thread in gst_base_sink_wait_clock) while the two pictures behind it waited for the encoder. The race is too
    rare for a test to catch in its seconds; what prevents it is checked here."""
    sink, port = started(64, 64)
    picture = np.zeros((64, 64, 3), np.uint8)
    viewer = Viewer(port, frames=10, protocol=protocol)
    try:
        write_until(sink, picture, lambda: sink.playing)
        pipeline = sink.appsrc.get_parent()
        while pipeline.get_parent() is not None:
            pipeline = pipeline.get_parent()
        elements: list = []
        pipeline.iterate_recurse().foreach(elements.append)
        sinks = [e for e in elements if e.get_factory().get_name() in ("appsink", "multiudpsink")]
        assert sinks and not any(e.get_property("sync") for e in sinks), [(e.get_name(), e.get_property("sync"))
                                                                          for e in sinks]
        write_until(sink, picture, viewer.exited)
        assert viewer.decoded() == 10
    finally:
        viewer.kill()
        sink.close()


def request(connection: socket.socket, method: str, url: str, cseq: int, headers: str = "") -> str:
    """One RTSP request and its response's head (the body read past)."""
    connection.sendall(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(r"Content-Length: (\d+)", head.decode())
    while length and len(body) < int(length[1]):
        body += connection.recv(65536)
    return head.decode()


def read_all(connection: socket.socket) -> None:
    try:
        while connection.recv(65536):
            pass
    except OSError:  # closed by the test
        pass


def test_a_client_that_is_not_playing_misses_nothing_and_then_sees_the_newest_pictures() -> None:
    """A client that has set the stream up but not played it, then paused it: the media exists (its appsrc too)
    but takes no pictures. Pictures numbered in their first pixel are written 200 a second throughout. While it
    does not play, no write counts as let go (nobody was behind) and at most two wait; on PLAY the first picture
    to leave the appsrc is one of the newest two written, not one from when it was set up a second before."""
    Gst = gst()
    sink, port = started(64, 48)
    url, out, sent, stop = f"rtsp://127.0.0.1:{port}/x", [], [], threading.Event()

    def first_number(pad, info) -> Gst.PadProbeReturn:
        high, low = info.get_buffer().extract_dup(0, 2)
        out.append(256 * high + low)
        return Gst.PadProbeReturn.OK

    def writer() -> None:
        while not stop.is_set():
            i, picture = len(sent), np.zeros((48, 64, 3), np.uint8)
            picture[0, 0, :2] = divmod(i, 256)
            went = sink.write(picture, Frame(picture, i, 0.0, 0.0), 0.0)
            appsrc = sink.appsrc
            sent.append((went, appsrc.get_property("current-level-buffers") if appsrc is not None else 0))
            time.sleep(0.005)

    connection = socket.create_connection(("127.0.0.1", port))
    writing = threading.Thread(target=writer, daemon=True)
    writing.start()
    try:
        request(connection, "OPTIONS", url, 1)
        assert " 200 " in request(connection, "DESCRIBE", url, 2, "Accept: application/sdp\r\n").splitlines()[0]
        head = request(connection, "SETUP", f"{url}/stream=0", 3, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        session = re.search(r"Session: ([^;\r\n]+)", head)[1]
        sink.appsrc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, first_number)
        set_up = len(sent)
        time.sleep(1.0)
        played = len(sent)
        assert not sink.playing and all(went for went, _ in sent[set_up:played])
        connection.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 4\r\nSession: {session}\r\n\r\n".encode())
        threading.Thread(target=read_all, args=(connection,), daemon=True).start()  # the RTP the client is sent
        wait_until(lambda: out)
        assert out[0] >= played - 2 and sink.playing, (out[:3], played)
        connection.sendall(f"PAUSE {url} RTSP/1.0\r\nCSeq: 5\r\nSession: {session}\r\n\r\n".encode())
        wait_until(lambda: not sink.playing)
        paused = len(sent)
        time.sleep(1.0)
        assert not sink.playing and all(went for went, _ in sent[paused:])
        assert max(level for _, level in sent) <= 2
    finally:
        stop.set()
        writing.join(CLIENT_S)  # no write into a closing server
        connection.close()
        sink.close()


def test_with_no_client_every_picture_counts_as_sent() -> None:
    """Nobody is watching: nothing waits for an encoder and nothing is missed."""
    sink, _ = started(64, 48)
    try:
        picture = np.zeros((48, 64, 3), np.uint8)
        assert all(sink.write(picture, Frame(picture, i, 0.0, 0.0), 0.0) for i in range(20))
    finally:
        sink.close()


def test_an_odd_sized_stream_is_played_by_a_client() -> None:
    """A 321x241 stream (x264 takes even sizes only) reaches an rtspsrc client, which decodes 10 pictures."""
    sink, port = started(321, 241)
    viewer = Viewer(port, frames=10)
    try:
        write_until(sink, np.zeros((241, 321, 3), np.uint8), viewer.exited)
        assert viewer.decoded() == 10
    finally:
        viewer.kill()
        sink.close()


def test_a_media_error_stops_the_run_with_one_line_naming_the_output() -> None:
    """Pictures 16386 wide, more than H.264 encoders take (x264: 16384): when a client comes, the media serving it
    fails; the next write raises, naming the URI and the encoder's error."""
    sink, port = started(16386, 2)
    viewer = Viewer(port, frames=1)
    try:
        with pytest.raises(MediaError, match=rf"^rtsp://@:{port}/x: \S") as raised:
            write_until(sink, np.zeros((2, 16386, 3), np.uint8), lambda: False)
        assert "\n" not in str(raised.value)
    finally:
        viewer.kill()
        sink.close()


def test_ports_outside_1_to_65535_are_refused_when_the_uri_is_parsed() -> None:
    assert parse_output("rtsp://@:1/x").port == 1 and parse_output("rtsp://@:65535/x").port == 65535
    for port in (0, 65536, 99999):
        with pytest.raises(MediaError, match=rf"^rtsp://@:{port}/x: port {port} .*1 to 65535"):
            parse_output(f"rtsp://@:{port}/x")


def test_dannet_run_refuses_a_port_out_of_range_before_opening_the_model(tmp_path: Path, capsys) -> None:
    """The model is not a model: the URI's error comes first, so nothing was loaded before it."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not a model")
    code, err = in_process(capsys, "dannet-run", "--model", model, "--input", "test://", "--output",
                           "rtsp://@:65536/x")
    assert code == USAGE and "rtsp://@:65536/x: port 65536" in the_error(err, "dannet-run")


def test_close_frees_the_port_for_the_next_server(capsys) -> None:
    """The port is taken while the output serves and free once it is closed, for a plain socket and for a
    second RTSP output in the same process; the line saying where it serves names the port it listens on."""
    sink, port = started(64, 48)
    assert not port_is_free(port)
    assert f":{port}/x" in capsys.readouterr().out
    sink.close()
    assert port_is_free(port)
    again = RtspSink(parse_output(f"rtsp://@:{port}/x"), "h264", 4000)
    again.start(64, 48, Fraction(30))
    again.close()


def test_close_after_the_port_could_not_be_taken_is_quiet() -> None:
    """The port is another listener's: start says so, and close, which a run always calls, has nothing to undo."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = RtspSink(parse_output(f"rtsp://@:{port}/x"), "h264", 4000)
        with pytest.raises(MediaError, match=f"cannot listen on port {port}"):
            sink.start(64, 48, Fraction(30))
        sink.close()
