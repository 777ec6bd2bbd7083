"""Camera strings in GStreamer pipeline text: the config refuses what can never be a device path or an RTSP address,
and what goes into the pipeline comes back verbatim as the source element's property, with no element added.

Two readers check the text: real GStreamer (`Gst.parse_launch` under the system Python, when GStreamer and its
`rtspsrc`/`v4l2src` are installed: apt-get install gir1.2-gstreamer-1.0 gstreamer1.0-plugins-good), and, always, a
small reader of gst-launch's quoting rules written here."""
from __future__ import annotations

import json
import shutil
import subprocess
from typing import Dict, List, Tuple

import pytest

from edge.camera.config import CameraConfig
from edge.camera.pipelines import gst_quote, gstreamer_pipeline
from edge.errors import InputError

PLAIN_URL = "rtsp://cam.local:554/live"
TRICKY_URLS = [
    'rtsp://admin:pa"ss@cam.local/live',  # a quote in a password
    "rtsp://cam.local/live\\",  # a trailing backslash would escape the closing quote
    'rtsp://cam.local/a\\"b',
    'rtsp://cam.local/x"!fakesink!"y',  # would add an element if the quotes were not escaped
    "rtsp://cam.local/x,y;z=1'q'!identity",
    "rtsp://cam.local/%20&?#[]{}$()*<>|~^`\\123\\0",
    "rtsps://usér:pässword@cam.local/ünïcode",
]
PLAIN_DEVICE = "/dev/video0"
TRICKY_DEVICES = [
    "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0",
    "/dev/v4l/by-id/usb-Cam,Inc;x=1-video-index0",
    "/dev/video\\0",
]


def _rtsp(url: str) -> str:
    return gstreamer_pipeline(CameraConfig(kind="rtsp", url=url))


def _usb(device: str) -> str:
    return gstreamer_pipeline(CameraConfig(kind="usb", backend="gstreamer", device=device))


# ---------------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize("device", ["/dev/video0 ! fakesink", "/dev/video0!fakesink", '/dev/video"0"', "/dev/vid eo0",
                                    "/dev/video0\n", "/dev/video'0'", "video0", "~/cam"])
def test_a_device_that_is_not_a_plain_dev_path_is_refused_at_load(device):
    with pytest.raises(InputError, match="camera.device") as error:
        CameraConfig.from_dict({"kind": "usb", "backend": "gstreamer", "device": device})
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("url", ["rtsp://cam/live ! fakesink", "rtsp://cam/li\tve", "rtsp://cam/live\x00",
                                 "rtsp://cam/\x1b[2J", "rtsp:///live", "http://cam/live", "rtsp:/cam"])
def test_a_url_with_whitespace_control_characters_or_no_host_is_refused_at_load(url):
    with pytest.raises(InputError, match="camera.url") as error:
        CameraConfig.from_dict({"kind": "rtsp", "url": url})
    assert len(str(error.value).splitlines()) == 1


def test_url_errors_keep_credentials_out():
    with pytest.raises(InputError) as error:
        CameraConfig.from_dict({"kind": "rtsp", "url": "rtsp://admin:secret@cam/live now"})
    assert "secret" not in str(error.value)


def test_a_codec_outside_the_list_is_refused():
    with pytest.raises(InputError, match="codec must be one of h264, h265"):
        CameraConfig.from_dict({"kind": "rtsp", "url": PLAIN_URL, "codec": "h264 ! fakesink"})


def test_gst_quote_leaves_plain_values_bare_and_refuses_what_gstreamer_reads_otherwise():
    assert gst_quote("/dev/video0") == "/dev/video0"
    assert gst_quote('rtsp://h/a"b\\') == '"rtsp://h/a\\"b\\\\"'
    for value in ("", "NULL", '"quoted"'):
        with pytest.raises(ValueError):
            gst_quote(value)


# ---------------------------------------------------------------------------------------------- own reader


def read_launch_text(text: str) -> List[Tuple[str, Dict[str, str]]]:
    """gst-launch text -> [(element or caps, {property: value})], by gst_parse_launch's quoting rules: `!` links
    elements and whitespace separates properties, except inside double quotes; a backslash takes the next character
    as it is, inside quotes or not. An unterminated quote is an error, as in GStreamer."""
    elements: List[List[str]] = [[]]
    token: List[str] = []
    started = in_quotes = False
    position = 0

    def flush() -> None:
        nonlocal started
        if started:
            elements[-1].append("".join(token))
        token.clear()
        started = False

    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            token.append(text[position + 1])
            started, position = True, position + 2
            continue
        if char == '"':
            in_quotes, started = not in_quotes, True
        elif in_quotes or not (char.isspace() or char == "!"):
            token.append(char)
            started = True
        else:
            flush()
            if char == "!":
                elements.append([])
        position += 1
    if in_quotes:
        raise ValueError("unterminated quote in %r" % text)
    flush()
    parsed = []
    for words in elements:
        if not words:
            raise ValueError("an empty element in %r" % text)
        properties = dict(word.split("=", 1) for word in words[1:])
        parsed.append((words[0], properties))
    return parsed


@pytest.mark.parametrize("url", TRICKY_URLS)
def test_an_rtsp_url_reaches_rtspsrc_verbatim_and_adds_no_element(url):
    plain, tricky = read_launch_text(_rtsp(PLAIN_URL)), read_launch_text(_rtsp(url))
    assert [name for name, _ in tricky] == [name for name, _ in plain]
    assert tricky[0] == ("rtspsrc", {"location": url, "latency": "200"})


@pytest.mark.parametrize("device", TRICKY_DEVICES)
def test_a_usb_device_path_reaches_v4l2src_verbatim_and_adds_no_element(device):
    plain, tricky = read_launch_text(_usb(PLAIN_DEVICE)), read_launch_text(_usb(device))
    assert [name for name, _ in tricky] == [name for name, _ in plain]
    assert tricky[0] == ("v4l2src", {"device": device})


def test_the_own_reader_sees_what_unquoted_text_would_do():
    assert [n for n, _ in read_launch_text("v4l2src device=/dev/video0 ! fakesink ! appsink")] == [
        "v4l2src", "fakesink", "appsink"]
    with pytest.raises(ValueError, match="unterminated"):
        read_launch_text('rtspsrc location="rtsp://cam/live\\" latency=200 ! appsink')


# ---------------------------------------------------------------------------------------------- real GStreamer

# Runs under the system Python (GStreamer's bindings are not in the venv). Elements this machine lacks (the
# Jetson's nvv4l2decoder/nvvidconv, the parsers of plugins-bad) are swapped for stand-ins that link to anything:
# the decoder for decodebin, the rest for identity. Prints, per pipeline, the element factories and the source's
# location or device, or the parse error.
GST_READER = r"""
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst
Gst.init(None)
if sys.argv[1:] == ["--probe"]:
    print(json.dumps(all(Gst.ElementFactory.find(n) for n in ("rtspsrc", "v4l2src", "decodebin", "identity"))))
    sys.exit(0)
STAND_INS = {"nvv4l2decoder": "decodebin"}
results = []
for text in json.load(sys.stdin):
    segments = []
    for segment in text.split(" ! "):
        name = segment.split()[0]
        missing = "/" not in name and Gst.ElementFactory.find(name) is None
        segments.append(STAND_INS.get(name, "identity") if missing else segment)
    try:
        pipeline = Gst.parse_launch(" ! ".join(segments))
    except GLib.Error as exc:
        results.append({"error": exc.message})
        continue
    factories, value = [], None
    iterator = pipeline.iterate_elements()
    while True:
        status, element = iterator.next()
        if status != Gst.IteratorResult.OK:
            break
        factory = element.get_factory().get_name()
        factories.append(factory)
        if factory in ("rtspsrc", "v4l2src"):
            value = element.get_property("location" if factory == "rtspsrc" else "device")
    results.append({"factories": sorted(factories), "value": value})
print(json.dumps(results))
"""


def _system_python_with_gstreamer() -> str:
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if not python:
            continue
        try:
            probe = subprocess.run([python, "-c", GST_READER, "--probe"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "true":
            return python
    pytest.skip("no Python with GStreamer's rtspsrc and v4l2src here (apt-get install gir1.2-gstreamer-1.0 "
                "gstreamer1.0-plugins-good)")


def _gst_read(python: str, texts: List[str]) -> List[dict]:
    done = subprocess.run([python, "-c", GST_READER], input=json.dumps(texts), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_real_gstreamer_reads_every_url_and_device_verbatim_with_no_element_added():
    python = _system_python_with_gstreamer()
    cases = [(_rtsp(url), url) for url in [PLAIN_URL] + TRICKY_URLS]
    cases += [(_usb(device), device) for device in [PLAIN_DEVICE] + TRICKY_DEVICES]
    results = _gst_read(python, [text for text, _ in cases])
    plain = {"rtspsrc": results[0], "v4l2src": results[len(TRICKY_URLS) + 1]}
    for (text, value), result in zip(cases, results):
        assert "error" not in result, (text, result)
        assert result["value"] == value, text
        expected = plain["rtspsrc" if text.startswith("rtspsrc") else "v4l2src"]["factories"]
        assert result["factories"] == expected, text
