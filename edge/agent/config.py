"""The agent's YAML config (`minicpmv-edge run --config agent.yaml`), checked completely when it is loaded, before
any engine is built or camera opened: every section and key, types and ranges, each mistake one line naming the key
and the fix. docs/agent-config.md lists the keys; configs/agent/ has commented examples.

Relative paths (bundle, camera.path, sink.directory, engine_cache, llm.gguf, llm.schedule.answers_file,
api.token_file, alerts.mqtt.password_file) are taken from the config file's folder. What depends on the machine (is
the bundle there, its precisions and slice bound, the video file, OpenCV's GStreamer) is checked when the agent
starts, still before any engine is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import yaml

from ..bundle.manifest import MODULES
from ..camera.config import CameraConfig
from ..device.profiles import PRECISIONS
from ..engines.base import BACKENDS
from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR
from ..errors import InputError
from ..llm.alert_config import AlertsConfig, parse_alerts
from ..llm.schedule import MAX_EVERY_S, ScheduleConfig
from ..monitor.policy import GovernorConfig, parse_governor
from ..preprocess.device.selection import MODES
from ..stream.address import DEFAULT_LISTEN, DEFAULT_SOCKET, Address, is_loopback, listen_address, tcp_address
from ..stream.protocol import DEFAULT_MAX_FRAME_BYTES, DTYPES
from .frame_reuse import SETTINGS as REUSE_SETTINGS
from .frame_reuse import FrameReuse
from .video_config import VideoConfig, parse_video

KEYS = ("bundle", "camera", "backend", "precision", "resize", "max_slice_nums", "reuse", "sink", "stream",
        "engine_cache", "max_frames", "llm", "api", "metrics", "governor", "alerts", "web", "video")
SINK_KINDS = ("npy",)
SINK_KEYS = ("kind", "directory", "keep")
STREAM_KEYS = ("enabled", "socket", "tcp", "secret_file", "dtype", "queue_length", "max_frame_bytes",
               "max_requests")
LLM_KEYS = ("gguf", "ctx", "max_tokens", "threads", "schedule")
SCHEDULE_KEYS = ("question", "every_s", "answers_file")
API_KEYS = ("listen", "token_file")
METRICS_KEYS = ("enabled", "listen", "llm_listen")
WEB_KEYS = ("enabled", "listen", "token_file", "preview_fps", "llm_url")
WEB_LISTEN = "127.0.0.1:8090"
MAX_PREVIEW_FPS = 30
METRICS_LISTEN, LLM_METRICS_LISTEN = "127.0.0.1:9108", "127.0.0.1:9109"
MAX_QUEUE_LENGTH = 1000
FRAME_BYTES_RANGE = (1 << 20, 1 << 30)  # 1 MiB .. 1 GiB: a 10-slice 4.5 frame in fp32 is about 10 MiB
REUSE_ENABLED = True  # the one default for frame reuse: config, loader, run and profile


@dataclass(frozen=True)
class ReuseConfig:
    """The `reuse:` section: on or off, and FrameReuse's settings (FrameReuse.from_dict)."""

    enabled: bool = REUSE_ENABLED
    settings: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SinkConfig:
    """The `sink:` section: .npy files in `directory`, the newest `keep` kept."""

    directory: Path = Path("tokens")
    keep: int = 100
    kind: str = "npy"


@dataclass(frozen=True)
class StreamConfig:
    """The `stream:` section: each frame's tokens also go to the token stream (docs/stream.md)."""

    enabled: bool = False
    address: Address = Address(path=DEFAULT_SOCKET)
    secret_file: Optional[Path] = None  # TCP only: the shared secret subscribers must prove
    dtype: str = "fp16"
    queue_length: int = 4  # frames kept per subscriber; a full queue drops its oldest
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES  # also the largest image a subscriber may ask to encode
    max_requests: int = 2  # images waiting to be encoded for subscribers; more are refused as busy


@dataclass(frozen=True)
class LlmConfig:
    """The `llm:` section: the LLM process (`minicpmv-edge llm --config`, `up`) and its GGUF (docs/llm.md)."""

    gguf: Path
    ctx: int = 4096
    max_tokens: int = 256
    threads: Optional[int] = None  # None: llama.cpp's default
    schedule: Optional[ScheduleConfig] = None  # None: answers on request only


@dataclass(frozen=True)
class ApiConfig:
    """The `api:` section: where the LLM process serves its API; a non-loopback host needs a token file."""

    listen: str = DEFAULT_LISTEN
    token_file: Optional[Path] = None


@dataclass(frozen=True)
class MetricsConfig:
    """The `metrics:` section: Prometheus metrics of the agent (`listen`) and of the LLM process (`llm_listen`),
    on loopback only (docs/service.md)."""

    enabled: bool = True
    listen: str = METRICS_LISTEN
    llm_listen: str = LLM_METRICS_LISTEN


@dataclass(frozen=True)
class WebConfig:
    """The `web:` section: the agent's local page (docs/web.md); a non-loopback `listen` needs a token file."""

    enabled: bool = False
    listen: str = WEB_LISTEN
    token_file: Optional[Path] = None
    preview_fps: float = 2.0  # the most JPEG frames per second the page is sent
    llm_url: Optional[str] = None  # the LLM API the page's questions go to; None: http:// + api.listen


@dataclass(frozen=True)
class AgentConfig:
    bundle: Path
    camera: CameraConfig
    backend: Dict[str, str] = field(default_factory=lambda: dict.fromkeys(MODULES, "onnxruntime"))
    precision: Dict[str, Optional[str]] = field(default_factory=lambda: dict.fromkeys(MODULES))  # None: default
    resize: str = "exact"
    max_slice_nums: Optional[int] = None  # None: the bundle's
    reuse: ReuseConfig = field(default_factory=ReuseConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    engine_cache: Path = DEFAULT_CACHE_DIR
    max_frames: Optional[int] = None  # None: run until the source ends or the agent is stopped
    llm: Optional[LlmConfig] = None  # None: no LLM process configured
    api: ApiConfig = field(default_factory=ApiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    governor: GovernorConfig = field(default_factory=GovernorConfig)  # off unless enabled
    alerts: Optional[AlertsConfig] = None  # None: no alert rules (the LLM process asks them: docs/alerts.md)
    web: WebConfig = field(default_factory=WebConfig)  # off unless enabled
    video: VideoConfig = field(default_factory=VideoConfig)  # 4.5 video packing; off unless group_frames > 1


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check the config at `path`; every InputError names the file, the key and the fix."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError("cannot read agent config %s (%s): pass --config with a YAML file" % (path, exc)) from exc
    except yaml.YAMLError as exc:
        raise InputError("%s is not valid YAML (%s): fix the file" % (path, str(exc).splitlines()[0])) from exc
    if not isinstance(data, dict):
        raise InputError("%s must be a YAML mapping with at least bundle: and camera: (see docs/agent-config.md)"
                         % path)
    try:
        return parse_agent_config(data, path.parent)
    except InputError as exc:
        raise InputError("%s: %s" % (path, exc)) from exc


def parse_agent_config(data: Mapping[str, Any], base: Path) -> AgentConfig:
    """An AgentConfig from the YAML mapping; relative paths are taken from `base`."""
    _known(data, KEYS)
    for key in ("bundle", "camera"):
        if data.get(key) is None:
            raise InputError("%s is missing: add it (see docs/agent-config.md)" % key)
    return AgentConfig(
        bundle=_path(data["bundle"], "bundle", base),
        camera=_camera(data["camera"], base),
        backend=_per_module(data.get("backend", "onnxruntime"), "backend", _backend, "onnxruntime"),
        precision=_per_module(data.get("precision"), "precision", _precision, None),
        resize=_choice(data.get("resize", "exact"), "resize", MODES),
        max_slice_nums=_positive_or_null(data.get("max_slice_nums"), "max_slice_nums", "null for the bundle's"),
        reuse=_reuse(_section(data, "reuse")),
        sink=_sink(_section(data, "sink"), base),
        stream=_stream(_section(data, "stream"), base),
        engine_cache=_path(data.get("engine_cache", str(DEFAULT_CACHE_DIR)), "engine_cache", base),
        max_frames=_positive_or_null(data.get("max_frames"), "max_frames", "null to run until the source ends"),
        llm=_llm(data.get("llm"), base),
        api=_api(_section(data, "api"), base),
        metrics=_metrics(_section(data, "metrics")),
        governor=parse_governor(data.get("governor")),
        alerts=parse_alerts(data.get("alerts"), base),
        web=_web(_section(data, "web"), base),
        video=parse_video(_section(data, "video")))


def _known(section: Mapping[str, Any], known: Sequence[str], where: str = "") -> None:
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:
        raise InputError("%sunknown key %r (a typo?): the keys are %s"
                         % (where + ": " if where else "", unknown[0], ", ".join(known)))


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A mapping section; absent or empty (`key:` with nothing under it) = all defaults."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError("%s must be a mapping of settings (see docs/agent-config.md), got %r" % (key, value))
    return value


def _path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise InputError("%s must be a path (relative to the config file's folder, or absolute), got %r"
                         % (key, value))
    return base / value


def _choice(value: Any, key: str, choices: Sequence[str], alternative: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError("%s must be one of %s%s, got %r" % (key, ", ".join(choices),
                                                             " " + alternative if alternative else "", value))
    return value


def _positive_or_null(value: Any, key: str, null_means: str) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError("%s must be an integer >= 1, or %s; got %r" % (key, null_means, value))
    return value


def _per_module(value: Any, key: str, check: Callable[[Any, str], Any], missing: Optional[str]) -> Dict[str, Any]:
    """One value for both modules, or {vpm: ..., resampler: ...} (a module left out gets `missing`), each value
    passed through `check(value, key)`."""
    if isinstance(value, Mapping):
        _known(value, MODULES, key)
        return {m: check(value.get(m, missing), "%s.%s" % (key, m)) for m in MODULES}
    return dict.fromkeys(MODULES, check(value, key))


def _backend(value: Any, key: str) -> str:
    return _choice(value, key, BACKENDS, "(or one per module: {vpm: ..., resampler: ...})")


def _precision(value: Any, key: str) -> Optional[str]:
    return None if value is None else _choice(value, key, PRECISIONS, "or null (the bundle target's default)")


def _camera(value: Any, base: Path) -> CameraConfig:
    """The camera section, a file's or folder's relative path taken from `base`."""
    if isinstance(value, Mapping) and isinstance(value.get("path"), str) and value["path"]:
        value = dict(value, path=str(base / value["path"]))  # an absolute path stays as it is
    return CameraConfig.from_dict(value)


def _reuse(section: Mapping[str, Any]) -> ReuseConfig:
    _known(section, ("enabled",) + REUSE_SETTINGS, "reuse")
    enabled = section.get("enabled", REUSE_ENABLED)
    if not isinstance(enabled, bool):
        raise InputError("reuse.enabled must be true or false, got %r" % (enabled,))
    settings = {k: v for k, v in section.items() if k != "enabled"}
    FrameReuse.from_dict(settings)  # refuses a bad threshold, age or size now, not at the first frame
    return ReuseConfig(enabled, settings)


def _sink(section: Mapping[str, Any], base: Path) -> SinkConfig:
    _known(section, SINK_KEYS, "sink")
    kind = section.get("kind", "npy")
    if kind not in SINK_KINDS:
        raise InputError("sink.kind must be npy (the token stream is the stream: section), got %r" % (kind,))
    keep = section.get("keep", 100)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InputError("sink.keep must be an integer >= 1 (how many .npy files to keep), got %r" % (keep,))
    return SinkConfig(_path(section.get("directory", "tokens"), "sink.directory", base), keep, kind)


def _int_in(value: Any, key: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError("%s must be an integer in %d..%d (%s), got %r" % (key, low, high, what, value))
    return value


def _stream(section: Mapping[str, Any], base: Path) -> StreamConfig:
    _known(section, STREAM_KEYS, "stream")
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InputError("stream.enabled must be true or false, got %r" % (enabled,))
    tcp, secret_file = section.get("tcp"), section.get("secret_file")
    if tcp is not None and section.get("socket") is not None:
        raise InputError("stream.socket and stream.tcp are both set: keep one (a Unix socket, or loopback TCP)")
    if tcp is None:
        if secret_file is not None:
            raise InputError("stream.secret_file is for stream.tcp only (a Unix socket is guarded by its file "
                             "mode): remove it, or set stream.tcp")
        address = Address(path=_path(section.get("socket", str(DEFAULT_SOCKET)), "stream.socket", base))
    else:
        if not isinstance(tcp, str):
            raise InputError("stream.tcp must be host:port on loopback, such as 127.0.0.1:8090, got %r" % (tcp,))
        address = tcp_address(tcp, "stream.tcp")
        if secret_file is None:
            raise InputError("stream.tcp needs stream.secret_file: a file holding the secret subscribers must prove")
    return StreamConfig(
        enabled, address, None if secret_file is None else _path(secret_file, "stream.secret_file", base),
        _choice(section.get("dtype", "fp16"), "stream.dtype", tuple(DTYPES)),
        _int_in(section.get("queue_length", 4), "stream.queue_length", 1, MAX_QUEUE_LENGTH,
                "frames kept per subscriber"),
        _int_in(section.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES), "stream.max_frame_bytes",
                *FRAME_BYTES_RANGE, "the largest frame's tokens in bytes"),
        _int_in(section.get("max_requests", 2), "stream.max_requests", 1, 64,
                "images that may wait to be encoded for subscribers"))


def _llm(value: Any, base: Path) -> Optional[LlmConfig]:
    if value is None:
        return None
    section = _section({"llm": value}, "llm")
    _known(section, LLM_KEYS, "llm")
    if section.get("gguf") is None:
        raise InputError("llm.gguf is missing: the LLM as a GGUF file (or remove the llm: section)")
    threads = section.get("threads")
    return LlmConfig(
        _path(section["gguf"], "llm.gguf", base),
        _int_in(section.get("ctx", 4096), "llm.ctx", 1, 1 << 20, "context tokens"),
        _int_in(section.get("max_tokens", 256), "llm.max_tokens", 1, 1 << 20, "the most tokens an answer may take"),
        None if threads is None else _int_in(threads, "llm.threads", 1, 1024, "CPU threads, or null for llama.cpp's"),
        _schedule(section.get("schedule"), base))


def _schedule(value: Any, base: Path) -> Optional[ScheduleConfig]:
    """`llm.schedule`: the standing question, its period and its answers file."""
    if value is None:
        return None
    section = _section({"llm.schedule": value}, "llm.schedule")
    _known(section, SCHEDULE_KEYS, "llm.schedule")
    question, every_s, answers_file = section.get("question"), section.get("every_s"), section.get("answers_file")
    if not isinstance(question, str) or not question.strip():
        raise InputError("llm.schedule.question must be the question to ask about each new frame, a non-empty "
                         "string such as \"What is on the table?\", got %r" % (question,))
    if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not 0 < every_s <= MAX_EVERY_S:
        raise InputError("llm.schedule.every_s must be the seconds between questions, a number > 0 and at most %d, "
                         "got %r" % (MAX_EVERY_S, every_s))
    return ScheduleConfig(question, float(every_s),
                          None if answers_file is None else _path(answers_file, "llm.schedule.answers_file", base))


def _listen_or_token(where: str, listen: Any, example: str, token_file: Any, token_is: str) -> None:
    """`<where>.listen` must be HOST:PORT; beyond loopback it needs `<where>.token_file` (holding `token_is`)."""
    if not isinstance(listen, str):
        raise InputError("%s.listen must be HOST:PORT such as %s, got %r" % (where, example, listen))
    host, _ = listen_address(listen, where + ".listen")
    if token_file is None and not is_loopback(host):
        raise InputError("%s.listen: %s is not a loopback address: set %s.token_file (a file whose first line is "
                         "%s), or listen on 127.0.0.1" % (where, host, where, token_is))


def _api(section: Mapping[str, Any], base: Path) -> ApiConfig:
    _known(section, API_KEYS, "api")
    listen, token_file = section.get("listen", DEFAULT_LISTEN), section.get("token_file")
    _listen_or_token("api", listen, DEFAULT_LISTEN, token_file, "the bearer token clients must send")
    return ApiConfig(listen, None if token_file is None else _path(token_file, "api.token_file", base))


def _metrics(section: Mapping[str, Any]) -> MetricsConfig:
    _known(section, METRICS_KEYS, "metrics")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InputError("metrics.enabled must be true or false, got %r" % (enabled,))
    listens = [section.get("listen", METRICS_LISTEN), section.get("llm_listen", LLM_METRICS_LISTEN)]
    for key, listen in zip(("metrics.listen", "metrics.llm_listen"), listens):
        if not isinstance(listen, str):
            raise InputError("%s must be HOST:PORT on loopback such as %s, got %r" % (key, METRICS_LISTEN, listen))
        host, _ = listen_address(listen, key)
        if not is_loopback(host):
            raise InputError("%s: %s is not a loopback address: metrics are served on loopback only (127.0.0.1 or "
                             "::1); let a local scraper or proxy carry them further" % (key, host))
    return MetricsConfig(enabled, *listens)


def _web(section: Mapping[str, Any], base: Path) -> WebConfig:
    _known(section, WEB_KEYS, "web")
    enabled, listen = section.get("enabled", False), section.get("listen", WEB_LISTEN)
    token_file, fps, llm_url = section.get("token_file"), section.get("preview_fps", 2), section.get("llm_url")
    if not isinstance(enabled, bool):
        raise InputError("web.enabled must be true or false, got %r" % (enabled,))
    _listen_or_token("web", listen, WEB_LISTEN, token_file, "the token the page's visitors must give")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_PREVIEW_FPS:
        raise InputError("web.preview_fps must be a number > 0 and at most %d (JPEG frames per second sent to the "
                         "page), got %r" % (MAX_PREVIEW_FPS, fps))
    if llm_url is not None and (not isinstance(llm_url, str) or not llm_url.startswith(("http://", "https://"))):
        raise InputError("web.llm_url must be the LLM API's base URL such as http://127.0.0.1:8089, or null for "
                         "http:// + api.listen; got %r" % (llm_url,))
    return WebConfig(enabled, listen, None if token_file is None else _path(token_file, "web.token_file", base),
                     float(fps), None if llm_url is None else llm_url.rstrip("/"))
