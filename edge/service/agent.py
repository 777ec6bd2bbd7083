"""The agent as a service (`minicpmv-edge run`): the pipeline the config describes, plus systemd's notify messages
(READY once the engines are open and the camera started, watchdog pings from the frame loop, STOPPING on the way
out), SIGHUP reloads (edge.service.reload), the Prometheus metrics (edge.service.agent_metrics) and the web page
(edge.web)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..agent.config import AgentConfig
from ..agent.runner import make_pipeline, run_pipeline
from ..errors import InputError
from ..monitor.governor_hook import GovernorHook
from ..monitor.readers import Monitor, open_monitor
from .notify import Notifier, watchdog_hook
from .reload import ConfigReloader

log = logging.getLogger("minicpmv-edge")


def serve_agent(path: Path, config: AgentConfig, max_frames: Optional[int] = None,
                monitor: Optional[Monitor] = None) -> Dict[str, Any]:
    """Run the agent of `config` (read from `path`) until done or SIGTERM; the pipeline's report. With metrics or the
    governor on, the box is read by `monitor` (default: `open_monitor`, opened and closed here), whose snapshots the
    governor decides on and the metrics export, with the governor's state."""
    notifier, server = Notifier(), None
    if config.metrics.enabled:  # the port first: a taken one is refused before any engine is built
        from .metrics_server import NO_CLIENT, MetricsServer

        try:
            from prometheus_client import CollectorRegistry

            from .agent_metrics import AgentMetrics
        except ImportError as exc:
            raise InputError(NO_CLIENT % exc) from None
        registry = CollectorRegistry(auto_describe=False)
        server = MetricsServer(registry, config.metrics.listen)
    owned = monitor is None and (server is not None or config.governor.enabled or config.web.enabled)
    if owned:
        monitor = open_monitor(interval_s=config.governor.interval_s)
    page = None
    try:
        if config.web.enabled:
            from ..web.page import WebPage

            page = WebPage(config.web, config.api, monitor)
        pipeline = make_pipeline(config, max_frames=max_frames, monitor=monitor)
    except BaseException:
        for part in (server, page, monitor if owned else None):
            if part is not None:
                part.close()
        raise
    reloader = ConfigReloader(path, config, notifier)
    hooks: List[Any] = [reloader]
    governor = next((hook.governor for hook in pipeline.hooks if isinstance(hook, GovernorHook)), None)
    if server is not None:
        hooks.append(AgentMetrics(pipeline, monitor, governor, registry))
        log.info("metrics at %s", server.url)
    if page is not None:
        hooks.extend(page.hooks(governor))
        log.info("web page at %s", page.url)
    watchdog = watchdog_hook(notifier)
    if watchdog is not None:
        hooks.append(watchdog)
        log.info("watchdog pings every %.3g s", watchdog.interval_s)
    pipeline.hooks.extend(hooks)
    log.info("tokens go to %s", pipeline.sink.describe())
    try:
        return run_pipeline(pipeline, started=lambda: notifier.ready("running: tokens go to %s"
                                                                     % pipeline.sink.describe()),
                            ending=lambda: notifier.stopping("stopping: finishing the stream"),
                            reload=reloader.request)
    finally:
        if server is not None:
            server.close()
        if page is not None:
            page.close()
        if owned:
            monitor.close()
        notifier.close()
