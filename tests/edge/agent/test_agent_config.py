"""The agent config is checked completely at load: every mistake is one line naming the file, the key and the fix,
exit code 2, before any engine is built or camera opened. The example configs in configs/agent/ load, and the file
example runs."""
from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from edge.agent.config import PIPELINE, AgentConfig, ApiConfig, LlmConfig, ReuseConfig, StreamConfig, load_agent_config
from edge.camera.config import CameraConfig
from edge.cli.main import main
from edge.llm.alert_config import AlertRule, AlertsConfig, MqttConfig, WebhookConfig
from edge.llm.schedule import ScheduleConfig
from edge.monitor.policy import GovernorConfig, MemoryPolicy, PowerPolicy, TemperaturePolicy
from edge.stream.address import Address
from tests.edge.camera.fakes import moving_frames, write_video

EXAMPLES = Path(__file__).resolve().parents[3] / "configs" / "agent"
BASE = "bundle: b\ncamera: {kind: file, path: clip.avi}\n"
RULE = "{name: d, question: q, every_s: 5, states: ['yes', 'no']}"

BAD_CONFIGS = [
    ("bundle: b\ncamera: csi\n", "camera: expected a mapping"),
    ("bundle: b\ncamera: [csi]\n", "camera: expected a mapping"),
    ("bundle: b\n", "camera is missing"),
    ("camera: {kind: csi}\n", "bundle is missing"),
    ("bundle: 5\ncamera: {kind: csi}\n", "bundle must be a path"),
    (BASE + "sink: {kind: npy, directry: /tmp/x, keep: 3}\n", "sink: unknown key 'directry'"),
    (BASE + "sink: {kind: stream}\n", "sink.kind must be npy"),
    (BASE + "sink: {keep: 0}\n", "sink.keep must be an integer >= 1"),
    (BASE + "sink: {keep: 2.5}\n", "sink.keep must be an integer >= 1"),
    (BASE + "sink: {directory: 7}\n", "sink.directory must be a path"),
    (BASE + "sink: tokens\n", "sink must be a mapping"),
    (BASE + "max_frames: -5\n", "max_frames must be an integer >= 1"),
    (BASE + "max_frames: 0\n", "max_frames must be an integer >= 1"),
    (BASE + "pipeline: parallel\n", "pipeline must be one of sequential, pipelined"),
    (BASE + "pipeline: [pipelined]\n", "pipeline must be one of sequential, pipelined"),
    (BASE + "max_frames: true\n", "max_frames must be an integer >= 1"),
    (BASE + "max_frames: ten\n", "max_frames must be an integer >= 1"),
    (BASE + "max_slice_nums: 0\n", "max_slice_nums must be an integer >= 1"),
    (BASE + "backend: tpu\n", "backend must be one of onnxruntime, tensorrt"),
    (BASE + "backend: {vpm: tensorrt, resampler: tpu}\n", "backend.resampler must be one of"),
    (BASE + "backend: {vmp: tensorrt}\n", "backend: unknown key 'vmp'"),
    (BASE + "precision: int4\n", "precision must be one of fp32, fp16, int8"),
    (BASE + "precision: {resampler: fp8}\n", "precision.resampler must be one of"),
    (BASE + "resize: bilinear\n", "resize must be one of exact, fast"),
    (BASE + "engine_cache: [a, b]\n", "engine_cache must be a path"),
    (BASE + "reuse: {enabled: sometimes}\n", "reuse.enabled must be true or false"),
    (BASE + "reuse: {treshold: 3}\n", "reuse: unknown key 'treshold'"),
    (BASE + "reuse: {threshold: -1}\n", "reuse.threshold must be a number"),
    (BASE + "reuse: {max_reuse_age_s: 10s}\n", "reuse.max_reuse_age_s must be"),
    (BASE + "reuse: on\n", "reuse must be a mapping"),
    (BASE + "colour: red\n", "unknown key 'colour'"),
    ("bundle: b\ncamera: {kind: webcam}\n", "camera.kind must be one of"),
    ("bundle: b\ncamera: {kind: csi, sensorid: 1}\n", "camera: unknown setting sensorid"),
    ("bundle: b\ncamera: {kind: usb, backend: gstreamer, device: '/dev/video0 ! fakesink'}\n", "camera.device"),
    ("bundle: b\ncamera: {kind: rtsp, url: 'rtsp://cam/live ! fakesink'}\n", "camera.url"),
    (BASE + "stream: on\n", "stream must be a mapping"),
    (BASE + "stream: {enabled: sometimes}\n", "stream.enabled must be true or false"),
    (BASE + "stream: {sokcet: /run/t.sock}\n", "stream: unknown key 'sokcet'"),
    (BASE + "stream: {socket: 5}\n", "stream.socket must be a path"),
    (BASE + "stream: {dtype: bf16}\n", "stream.dtype must be one of fp16, fp32"),
    (BASE + "stream: {queue_length: 0}\n", "stream.queue_length must be an integer in 1..1000"),
    (BASE + "stream: {queue_length: 2.5}\n", "stream.queue_length must be an integer in 1..1000"),
    (BASE + "stream: {max_requests: 0}\n", "stream.max_requests must be an integer in 1..64"),
    (BASE + "stream: {max_frame_bytes: 100}\n", "stream.max_frame_bytes must be an integer in 1048576..1073741824"),
    (BASE + "stream: {tcp: '0.0.0.0:8090', secret_file: s}\n", "stream.tcp: 0.0.0.0 is not a loopback address"),
    (BASE + "stream: {tcp: '10.0.0.2:8090', secret_file: s}\n", "stream.tcp: 10.0.0.2 is not a loopback address"),
    (BASE + "stream: {tcp: '127.0.0.1:99999', secret_file: s}\n", "stream.tcp must be host:port"),
    (BASE + "stream: {tcp: 8090, secret_file: s}\n", "stream.tcp must be host:port"),
    (BASE + "stream: {tcp: '127.0.0.1:8090'}\n", "stream.tcp needs stream.secret_file"),
    (BASE + "stream: {socket: t.sock, tcp: '127.0.0.1:8090', secret_file: s}\n", "are both set: keep one"),
    (BASE + "stream: {secret_file: s}\n", "stream.secret_file is for stream.tcp only"),
    (BASE + "llm: model.gguf\n", "llm must be a mapping"),
    (BASE + "llm: {ctx: 2048}\n", "llm.gguf is missing"),
    (BASE + "llm: {gguf: 5}\n", "llm.gguf must be a path"),
    (BASE + "llm: {gguf: m.gguf, ctx: 0}\n", "llm.ctx must be an integer in 1..1048576"),
    (BASE + "llm: {gguf: m.gguf, max_tokens: many}\n", "llm.max_tokens must be an integer"),
    (BASE + "llm: {gguf: m.gguf, threads: 0}\n", "llm.threads must be an integer in 1..1024"),
    (BASE + "llm: {gguf: m.gguf, n_ctx: 2048}\n", "llm: unknown key 'n_ctx'"),
    (BASE + "llm: {gguf: m.gguf, schedule: ask}\n", "llm.schedule must be a mapping"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every: 5}}\n", "llm.schedule: unknown key 'every'"),
    (BASE + "llm: {gguf: m.gguf, schedule: {every_s: 5}}\n", "llm.schedule.question must be the question"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: '  ', every_s: 5}}\n", "llm.schedule.question must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: 7, every_s: 5}}\n", "llm.schedule.question must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi}}\n", "llm.schedule.every_s must be the seconds"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: 0}}\n", "llm.schedule.every_s must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: -1}}\n", "llm.schedule.every_s must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: 5s}}\n", "llm.schedule.every_s must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: true}}\n", "llm.schedule.every_s must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: .nan}}\n", "llm.schedule.every_s must be"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: 86401}}\n", "and at most 86400"),
    (BASE + "llm: {gguf: m.gguf, schedule: {question: hi, every_s: 5, answers_file: 5}}\n",
     "llm.schedule.answers_file must be a path"),
    (BASE + "api: 8089\n", "api must be a mapping"),
    (BASE + "api: {listen: 8089}\n", "api.listen must be HOST:PORT"),
    (BASE + "api: {listen: '127.0.0.1:99999'}\n", "api.listen must be HOST:PORT with a port in 0..65535"),
    (BASE + "api: {listen: '0.0.0.0:8089'}\n", "api.listen: 0.0.0.0 is not a loopback address: set api.token_file"),
    (BASE + "api: {port: 8089}\n", "api: unknown key 'port'"),
    (BASE + "governor: on\n", "governor must be a mapping"),
    (BASE + "governor: {enabled: yes please}\n", "governor.enabled must be true or false"),
    (BASE + "governor: {min_dwel_s: 5}\n", "governor: unknown key 'min_dwel_s'"),
    (BASE + "governor: {interval_s: 0}\n", "governor.interval_s must be a number in 0.1..60"),
    (BASE + "governor: {min_dwell_s: -1}\n", "governor.min_dwell_s must be a number"),
    (BASE + "governor: {memory: {enter_used_fraction: [0.9, 0.85]}}\n",
     "governor.memory.enter_used_fraction must rise from one level to the next"),
    (BASE + "governor: {memory: {enter_used_fraction: [80, 90]}}\n",
     "governor.memory.enter_used_fraction must be a number in 0..1"),
    (BASE + "governor: {memory: {enter_used_fraction: [0.7, 0.8, 0.9, 0.95]}}\n", "give at most 3"),
    (BASE + "governor: {memory: {reduced_slices: 0}}\n", "governor.memory.reduced_slices must be an integer >= 1"),
    (BASE + "governor: {memory: {margin: .nan}}\n", "governor.memory.margin must be a number"),
    (BASE + "governor: {power: {budget_mw: 15W}}\n", "governor.power.budget_mw must be a number"),
    (BASE + "governor: {power: {budget_mw: 15000, frame_interval_s: []}}\n",
     "governor.power.frame_interval_s is empty"),
    (BASE + "governor: {power: {watts: 15}}\n", "governor.power: unknown key 'watts'"),
    (BASE + "governor: {temperature: {enter_c: [80, 90], frame_interval_s: [1.0]}}\n",
     "one entry per level each, got 2, 1 and 2"),
    (BASE + "governor: {temperature: {max_slice_nums: [null, 0]}}\n",
     "governor.temperature.max_slice_nums must be an integer >= 1"),
    *[(BASE + "alerts: " + alerts + "\n", message) for alerts, message in [
        ("on", "alerts must be a mapping"),
        ("{rule: []}", "alerts: unknown key 'rule'"),
        ("{rules: []}", "alerts.rules must be a list of rules"),
        ("{device: 'cam/1', rules: [%s]}" % "{name: d, question: q, every_s: 5, states: ['yes', 'no']}",
         "alerts.device must be a name of letters"),
        ("{rules: [door]}", "alerts.rules[0] must be a mapping"),
        ("{rules: [{name: 'a door', question: q, every_s: 5, states: ['yes', 'no']}]}",
         "alerts.rules[0].name must be a name of letters"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', 'no'], every: 5}]}",
         "alerts.rules[0]: unknown key 'every'"),
        ("{rules: [{name: d, question: '', every_s: 5, states: ['yes', 'no']}]}",
         "alerts.rules[d].question must be a non-empty question"),
        ("{rules: [{name: d, question: q, states: ['yes', 'no']}]}", "alerts.rules[d].every_s must be seconds between"),
        ("{rules: [{name: d, question: q, every_s: 0, states: ['yes', 'no']}]}", "alerts.rules[d].every_s must be"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes']}]}",
         "alerts.rules[d].states must be a list of 2 or more single words"),
        ("{rules: [{name: d, question: q, every_s: 5, states: yes/no}]}", "alerts.rules[d].states must be a list"),
        ("{rules: [{name: d, question: q, every_s: 5, states: [on, off]}]}", "quote the states, such as ['yes', 'no']"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', 'no way']}]}", "single words"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', 'Yes']}]}", "repeats a state or lists unknown"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', unknown]}]}", "repeats a state or lists unknown"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', 'no'], debounce: 0}]}",
         "alerts.rules[d].debounce must be an integer in 1..1000"),
        ("{rules: [{name: d, question: q, every_s: 5, states: ['yes', 'no'], cooldown_s: -1}]}",
         "alerts.rules[d].cooldown_s must be the fewest seconds"),
        ("{rules: [%s, %s]}" % (RULE, RULE), "the name 'd' is used twice"),
        ("{rules: [%s], " % RULE + "webhook: {url: 'ftp://h/x'}}",
         "alerts.webhook.url must be an http:// or https:// URL"),
        ("{rules: [%s], " % RULE + "webhook: {url: 'http://h/x', retries: 99}}",
         "alerts.webhook.retries must be an integer in 0..10"),
        ("{rules: [%s], " % RULE + "webhook: {url: 'http://h/x', timeout_s: 0}}",
         "alerts.webhook.timeout_s must be"),
        ("{rules: [%s], " % RULE + "mqtt: {port: 1883}}",
         "alerts.mqtt.host must be the broker's host name"),
        ("{rules: [%s], " % RULE + "mqtt: {host: 'mqtt://broker'}}",
         "no scheme, no port"),
        ("{rules: [%s], " % RULE + "mqtt: {host: b, port: 0}}",
         "alerts.mqtt.port must be an integer in 1..65535"),
        ("{rules: [%s], " % RULE + "mqtt: {host: b, topic_prefix: 'a/#'}}",
         "alerts.mqtt.topic_prefix must be topic levels without wildcards"),
        ("{rules: [%s], " % RULE + "mqtt: {host: b, password_file: pw}}",
         "alerts.mqtt.password_file needs alerts.mqtt.username"),
        ("{rules: [%s], " % RULE + "mqtt: {host: b, qos: 2}}",
         "alerts.mqtt: unknown key 'qos'"),
    ]],
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_a_bad_agent_config_is_one_line_naming_the_key_and_exit_2(tmp_path, capsys, text, message):
    config = tmp_path / "agent.yaml"
    config.write_text(text)
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err, err
    assert str(config) in err and message in err, err
    assert not (tmp_path / "tokens").exists(), "nothing is made for a config that is refused"


def test_profile_frames_zero_is_refused_by_the_parser(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    with pytest.raises(SystemExit) as stop:
        main(["profile", "--config", str(config), "--frames", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--frames" in err, err


def test_frame_reuse_has_one_default_in_the_dataclass_and_the_loader(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    loaded = load_agent_config(config)
    built = AgentConfig(bundle=Path("b"), camera=CameraConfig(kind="file", path="clip.avi"))
    assert loaded.reuse.enabled is True and built.reuse.enabled is True and ReuseConfig().enabled is True
    config.write_text(BASE + "reuse:\n")  # a section with every line commented out: the defaults
    assert load_agent_config(config).reuse == ReuseConfig()
    config.write_text(BASE + "reuse: {enabled: false, threshold: 3.5}\n")
    assert load_agent_config(config).reuse == ReuseConfig(False, {"threshold": 3.5})


def test_the_frame_loop_has_one_default_in_the_dataclass_and_the_loader(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    built = AgentConfig(bundle=Path("b"), camera=CameraConfig(kind="file", path="clip.avi"))
    assert load_agent_config(config).pipeline == built.pipeline == PIPELINE == "sequential"
    config.write_text(BASE + "pipeline: pipelined\n")
    assert load_agent_config(config).pipeline == "pipelined"


def test_the_stream_section_defaults_and_values(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    assert load_agent_config(config).stream == StreamConfig()
    assert StreamConfig().enabled is False and StreamConfig().address.path == Path("/run/minicpmv-edge/tokens.sock")
    config.write_text(BASE + "stream: {enabled: true, tcp: '127.0.0.1:8090', secret_file: secret, dtype: fp32, "
                             "queue_length: 8, max_frame_bytes: 16777216, max_requests: 5}\n")
    stream = load_agent_config(config).stream
    assert stream == StreamConfig(True, Address(host="127.0.0.1", port=8090), tmp_path / "secret", "fp32", 8, 1 << 24,
                                  5)
    config.write_text(BASE + "stream: {enabled: true, socket: run/tokens.sock}\n")
    assert load_agent_config(config).stream.address == Address(path=tmp_path / "run" / "tokens.sock")


def test_the_llm_and_api_sections_defaults_and_values(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    loaded = load_agent_config(config)
    assert loaded.llm is None and loaded.api == ApiConfig() == ApiConfig("127.0.0.1:8089", None)
    config.write_text(BASE + "llm: {gguf: llm/m.gguf}\napi:\n")
    loaded = load_agent_config(config)
    assert loaded.llm == LlmConfig(tmp_path / "llm" / "m.gguf", 4096, 256, None) and loaded.api == ApiConfig()
    config.write_text(BASE + "llm: {gguf: /m.gguf, ctx: 2048, max_tokens: 64, threads: 2}\n"
                             "api: {listen: '0.0.0.0:9000', token_file: token}\n")
    loaded = load_agent_config(config)
    assert loaded.llm == LlmConfig(Path("/m.gguf"), 2048, 64, 2)
    assert loaded.api == ApiConfig("0.0.0.0:9000", tmp_path / "token")


def test_the_llm_schedule_values(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE + "llm: {gguf: m.gguf, schedule: {question: 'What changed?', every_s: 10}}\n")
    assert load_agent_config(config).llm.schedule == ScheduleConfig("What changed?", 10.0, None)
    config.write_text(BASE + "llm:\n  gguf: m.gguf\n  schedule:\n    question: Who is at the door?\n"
                             "    every_s: 2.5\n    answers_file: out/answers.jsonl\n")
    assert load_agent_config(config).llm == LlmConfig(
        tmp_path / "m.gguf", schedule=ScheduleConfig("Who is at the door?", 2.5, tmp_path / "out" / "answers.jsonl"))


def test_the_alerts_section_defaults_and_values(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    assert load_agent_config(config).alerts is None
    config.write_text(BASE + "alerts:\n  device: cam1\n  rules:\n    - {name: door, question: 'Anyone?', every_s: 5, "
                             "states: ['Yes', 'no']}\n    - {name: light, question: 'Colour?', every_s: 0.5, "
                             "states: [red, green, 'off'], debounce: 1, cooldown_s: 0}\n"
                             "  webhook: {url: 'https://hooks.example.com/a', timeout_s: 5, retries: 0}\n"
                             "  mqtt: {host: broker.lan, port: 8883, topic_prefix: site/cams, client_id: cam1, "
                             "username: cam, password_file: secrets/mqtt}\n")
    assert load_agent_config(config).alerts == AlertsConfig(
        "cam1", (AlertRule("door", "Anyone?", 5.0, ("yes", "no"), 2, 30.0),
                 AlertRule("light", "Colour?", 0.5, ("red", "green", "off"), 1, 0.0)),
        WebhookConfig("https://hooks.example.com/a", 5.0, 0),
        MqttConfig("broker.lan", 8883, "site/cams", "cam1", "cam", tmp_path / "secrets" / "mqtt"))
    config.write_text(BASE + "alerts: {rules: [{name: d, question: q, every_s: 5, states: ['yes', 'no']}], "
                             "mqtt: {host: 127.0.0.1}}\n")
    alerts = load_agent_config(config).alerts
    assert alerts.device == socket.gethostname() and alerts.webhook is None
    assert alerts.mqtt == MqttConfig("127.0.0.1", 1883, "minicpmv-edge")


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "agent.yaml").write_text("bundle: ../bundle\ncamera: {kind: folder, path: frames}\n"
                                       "sink: {directory: out}\nengine_cache: cache\n")
    config = load_agent_config(folder / "agent.yaml")
    assert config.bundle == folder / "../bundle" and config.camera.path == str(folder / "frames")
    assert config.sink.directory == folder / "out" and config.engine_cache == folder / "cache"
    (folder / "abs.yaml").write_text("bundle: /opt/b\ncamera: {kind: file, path: /data/clip.mp4}\n")
    absolute = load_agent_config(folder / "abs.yaml")
    assert absolute.bundle == Path("/opt/b") and absolute.camera.path == "/data/clip.mp4"


# ---------------------------------------------------------------------------------------------- examples


def test_the_example_configs_load_as_documented():
    configs = {path.stem: load_agent_config(path) for path in sorted(EXAMPLES.glob("*.yaml"))}
    assert sorted(configs) == ["csi", "file", "rtsp", "usb"]
    assert {name: config.camera.kind for name, config in configs.items()} == {
        "csi": "csi", "file": "file", "rtsp": "rtsp", "usb": "usb"}
    csi, usb, rtsp, file = configs["csi"], configs["usb"], configs["rtsp"], configs["file"]
    assert csi.backend == {"vpm": "tensorrt", "resampler": "tensorrt"} and csi.camera.width == 1920
    assert usb.precision == {"vpm": "int8", "resampler": "fp16"} and usb.camera.device.startswith("/dev/v4l/by-id/")
    assert rtsp.camera.url.startswith("rtsp://") and "secret" not in rtsp.camera.describe()
    assert rtsp.reuse.settings == {"max_reuse_age_s": 5.0}
    assert file.bundle == EXAMPLES / "bundle" and file.camera.path == str(EXAMPLES / "clip.avi")
    assert file.sink.directory == EXAMPLES / "tokens" and file.backend["vpm"] == "onnxruntime"
    assert all(config.reuse.enabled for config in configs.values())
    assert csi.stream.enabled and csi.stream.address.path == Path("/run/minicpmv-edge/tokens.sock")
    assert not file.stream.enabled


def test_the_file_example_runs_next_to_a_bundle_and_a_clip(converted_bundle, tmp_path, capsys):
    config = tmp_path / "file.yaml"
    shutil.copy(EXAMPLES / "file.yaml", config)
    (tmp_path / "bundle").symlink_to(converted_bundle, target_is_directory=True)
    write_video(tmp_path / "clip.avi", moving_frames(4, size=(320, 240)), fps=10)
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--max-frames", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 2 and report["errors"] == 0
    written = sorted((tmp_path / "tokens").glob("frame-*.npy"))
    assert len(written) == 2 and np.load(written[0]).dtype == np.float32


# ---------------------------------------------------------------------------------------------- before engines


def test_a_missing_video_is_refused_before_any_engine_is_built(converted_bundle, tmp_path, capsys):
    # TensorRT is not installed here: were the engines opened first, the error would be about TensorRT.
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: missing.avi}\nbackend: tensorrt\n" % converted_bundle)
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "camera.path" in err and "TensorRT" not in err, err


def test_max_slice_nums_beyond_the_bundles_bound_is_one_line(converted_bundle, tmp_path, capsys):
    write_video(tmp_path / "clip.avi", moving_frames(2), fps=10)
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nmax_slice_nums: 99\n" % converted_bundle)
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_slice_nums" in err, err


def test_the_governor_section_defaults_and_values(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(BASE)
    assert load_agent_config(config).governor == GovernorConfig() and GovernorConfig().enabled is False
    config.write_text(BASE + "governor:\n")
    assert load_agent_config(config).governor == GovernorConfig()
    config.write_text(BASE + "governor: {enabled: true, interval_s: 2, min_dwell_s: 30,\n"
                             "  memory: {enter_used_fraction: [0.8, 0.9], margin: 0.1, reduced_slices: 2},\n"
                             "  power: {budget_mw: 12000, margin_mw: 500, frame_interval_s: [1, 3]},\n"
                             "  temperature: {enter_c: [70], margin_c: 3, frame_interval_s: [0.5], "
                             "max_slice_nums: [2]}}\n")
    assert load_agent_config(config).governor == GovernorConfig(
        True, 2.0, 30.0, MemoryPolicy((0.8, 0.9), 0.1, 2), PowerPolicy(12000.0, 500.0, (1.0, 3.0)),
        TemperaturePolicy((70.0,), 3.0, (0.5,), (2,)))
