"""The one TensorRT logger of a process, per tensorrt module.

TensorRT keeps the first logger a process hands to a builder, runtime or refitter and ignores later ones (with a
warning, seen with TensorRT-RTX 1.7): a fresh logger per build would never hear that build's errors. So every builder
and runtime of one tensorrt module gets this logger; a build points it at its own `log` and reads its errors.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, List

Log = Callable[[str], None]
_LOGGERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def shared_logger(trt: Any) -> Any:
    """`trt`'s process-wide ILogger: keeps errors since the last `start`, passes warnings to the current sink."""
    logger = _LOGGERS.get(trt)
    if logger is None:
        logger = _logger_class(trt)()
        _LOGGERS[trt] = logger
    return logger


def _logger_class(trt: Any) -> type:
    class SharedLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []
            self.sink: Log = print

        def start(self, sink: Log) -> None:
            """A new build: forget earlier errors, send warnings to `sink`."""
            self.errors, self.sink = [], sink

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                self.sink("  TensorRT error: %s" % msg)
            elif int(severity) == int(trt.ILogger.Severity.WARNING):
                self.sink("  TensorRT warning: %s" % msg)

    return SharedLogger
