"""The agent config's `alerts:` section: standing rules asked on a schedule, and where their alerts go (a webhook,
an MQTT broker), checked completely at load, one line per mistake naming the key and the fix (docs/alerts.md)."""
from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ..errors import InputError
from .schedule import MAX_EVERY_S

DEFAULT_DEBOUNCE = 2
DEFAULT_COOLDOWN_S = 30.0
DEFAULT_TOPIC_PREFIX = "minicpmv-edge"
KEYS = ("device", "rules", "webhook", "mqtt")
RULE_KEYS = ("name", "question", "every_s", "states", "debounce", "cooldown_s")
WEBHOOK_KEYS = ("url", "timeout_s", "retries")
MQTT_KEYS = ("host", "port", "topic_prefix", "client_id", "username", "password_file")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # a device or rule name: one MQTT topic level
WORD = re.compile(r"[^\W_]+\Z")  # a state: one word, as an answer's first word is matched
HOST = re.compile(r"[A-Za-z0-9_.:-]+\Z")  # a host name, IPv4 or IPv6 address
MAX_RETRIES = 10


@dataclass(frozen=True)
class AlertRule:
    """Ask `question` every `every_s` s; an answer's first word (lowercased) is one of `states`, else unknown; a
    state seen `debounce` times in a row becomes the rule's state; alerts at least `cooldown_s` s apart."""

    name: str
    question: str
    every_s: float
    states: Tuple[str, ...]
    debounce: int = DEFAULT_DEBOUNCE
    cooldown_s: float = DEFAULT_COOLDOWN_S


@dataclass(frozen=True)
class WebhookConfig:
    """Each alert POSTed as JSON to `url`; `retries` more tries (1 s, 2 s, 4 s... apart) on errors and 5xx."""

    url: str
    timeout_s: float = 10.0
    retries: int = 3


@dataclass(frozen=True)
class MqttConfig:
    """The broker each alert and each rule's retained state go to, under `<topic_prefix>/<device>/<rule>/`."""

    host: str
    port: int = 1883
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    client_id: Optional[str] = None  # None: paho makes one
    username: Optional[str] = None
    password_file: Optional[Path] = None  # its first line is the password


@dataclass(frozen=True)
class AlertsConfig:
    """The rules of device `device`, and the sinks beyond the API's page (None: not used)."""

    device: str
    rules: Tuple[AlertRule, ...]
    webhook: Optional[WebhookConfig] = None
    mqtt: Optional[MqttConfig] = None


def parse_alerts(value: Any, base: Path) -> Optional[AlertsConfig]:
    """The `alerts:` section (absent: None); relative paths are taken from `base`."""
    if value is None:
        return None
    section = _mapping(value, "alerts")
    _known(section, KEYS, "alerts")
    device = section.get("device", socket.gethostname())
    if not isinstance(device, str) or not NAME.match(device):
        raise InputError("alerts.device must be a name of letters, digits, '.', '_' or '-' (one MQTT topic level, "
                         "default the host name), got %r" % (device,))
    rules = section.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InputError("alerts.rules must be a list of rules, each {name, question, every_s, states} "
                         "(see docs/alerts.md), got %r" % (rules,))
    parsed = tuple(_rule(rule, "alerts.rules[%d]" % i) for i, rule in enumerate(rules))
    names = [rule.name for rule in parsed]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError("alerts.rules: the name %r is used twice: give each rule its own name" % twice[0])
    webhook, mqtt = section.get("webhook"), section.get("mqtt")
    return AlertsConfig(device, parsed, None if webhook is None else _webhook(webhook),
                        None if mqtt is None else _mqtt(mqtt, base))


def _rule(value: Any, key: str) -> AlertRule:
    rule = _mapping(value, key)
    _known(rule, RULE_KEYS, key)
    name = rule.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError("%s.name must be a name of letters, digits, '.', '_' or '-' (one MQTT topic level), such "
                         "as doorway, got %r" % (key, name))
    key = "alerts.rules[%s]" % name
    question = rule.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("%s.question must be a non-empty question, such as \"Is a person in the doorway? Answer "
                         "yes or no.\", got %r" % (key, question))
    states = rule.get("states")
    if isinstance(states, list) and any(isinstance(state, bool) for state in states):
        raise InputError("%s.states: YAML reads a bare yes, no, on or off as true or false: quote the states, such "
                         "as ['yes', 'no'], got %r" % (key, states))
    if (not isinstance(states, list) or len(states) < 2 or not all(isinstance(s, str) and WORD.match(s)
                                                                    for s in states)):
        raise InputError("%s.states must be a list of 2 or more single words an answer starts with, such as [yes, "
                         "no], got %r" % (key, states))
    words = [state.lower() for state in states]
    if len(set(words)) < len(words) or "unknown" in words:
        raise InputError("%s.states: %r repeats a state or lists unknown (the state of every other answer): list "
                         "each state once" % (key, states))
    return AlertRule(name, question, _number(rule.get("every_s"), key + ".every_s", MAX_EVERY_S,
                                             "seconds between questions"), tuple(words),
                     _integer(rule.get("debounce", DEFAULT_DEBOUNCE), key + ".debounce", 1, 1000,
                              "answers in a row before a state counts"),
                     _number(rule.get("cooldown_s", DEFAULT_COOLDOWN_S), key + ".cooldown_s", MAX_EVERY_S,
                             "the fewest seconds between two alerts of the rule", zero=True))


def _webhook(value: Any) -> WebhookConfig:
    section = _mapping(value, "alerts.webhook")
    _known(section, WEBHOOK_KEYS, "alerts.webhook")
    url = section.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("alerts.webhook.url must be an http:// or https:// URL such as "
                         "https://hooks.example.com/alerts, got %r" % (url,))
    return WebhookConfig(url, _number(section.get("timeout_s", 10.0), "alerts.webhook.timeout_s", 300.0,
                                      "seconds to wait for the receiver"),
                         _integer(section.get("retries", 3), "alerts.webhook.retries", 0, MAX_RETRIES,
                                  "tries after the first, 1 s doubling apart"))


def _mqtt(value: Any, base: Path) -> MqttConfig:
    section = _mapping(value, "alerts.mqtt")
    _known(section, MQTT_KEYS, "alerts.mqtt")
    host = section.get("host")
    if not isinstance(host, str) or not HOST.match(host):
        raise InputError("alerts.mqtt.host must be the broker's host name or address, such as 127.0.0.1 (no "
                         "scheme, no port: that is alerts.mqtt.port), got %r" % (host,))
    prefix = section.get("topic_prefix", DEFAULT_TOPIC_PREFIX)
    if (not isinstance(prefix, str) or not prefix.strip("/") or prefix != prefix.strip("/")
            or any(c in prefix for c in "+#\0")):
        raise InputError("alerts.mqtt.topic_prefix must be topic levels without wildcards or outer slashes, such "
                         "as %s or site/cams, got %r" % (DEFAULT_TOPIC_PREFIX, prefix))
    strings = {key: section.get(key) for key in ("client_id", "username", "password_file")}
    for key, text in strings.items():
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InputError("alerts.mqtt.%s must be a non-empty string, or left out, got %r" % (key, text))
    if strings["password_file"] is not None and strings["username"] is None:
        raise InputError("alerts.mqtt.password_file needs alerts.mqtt.username: the user the password is for")
    password_file = strings["password_file"]
    return MqttConfig(host, _integer(section.get("port", 1883), "alerts.mqtt.port", 1, 65535, "the broker's port"),
                      prefix, strings["client_id"], strings["username"],
                      None if password_file is None else base / password_file)


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError("%s must be a mapping of settings (see docs/alerts.md), got %r" % (key, value))
    return value


def _known(section: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:
        raise InputError("%s: unknown key %r (a typo?): the keys are %s" % (where, unknown[0], ", ".join(known)))


def _number(value: Any, key: str, high: float, what: str, zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not (0 <= value if zero else 0 < value) or value > high):
        raise InputError("%s must be %s, a number %s and at most %d, got %r"
                         % (key, what, ">= 0" if zero else "> 0", high, value))
    return float(value)


def _integer(value: Any, key: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError("%s must be an integer in %d..%d (%s), got %r" % (key, low, high, what, value))
    return value
