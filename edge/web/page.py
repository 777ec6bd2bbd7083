"""The page as the agent starts it: the preview and telemetry hooks, the LLM proxy and the server, from the
config's `web:` (and `api:`, for the LLM's address and token) section."""
from __future__ import annotations

from typing import Any, List, Optional

from .llm_proxy import LlmProxy
from .preview import Preview
from .server import WebServer, read_token
from .state import Telemetry


class WebPage:
    """Listening from construction (a taken port is refused before any engine is built); `attach` adds its hooks
    to the pipeline once it exists; `close` stops the server and the preview thread."""

    def __init__(self, web: Any, api: Any, monitor: Optional[Any] = None) -> None:
        api_token = None if api.token_file is None else read_token(api.token_file, "api.token_file")
        token = None if web.token_file is None else read_token(web.token_file, "web.token_file")
        self.preview, self.telemetry = Preview(web.preview_fps), Telemetry(monitor)
        proxy = LlmProxy(web.llm_url or "http://" + api.listen, api_token)
        try:
            self.server = WebServer(web.listen, self.preview, self.telemetry, proxy, token)
        except BaseException:
            self.preview.close()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    def hooks(self, governor: Optional[Any] = None) -> List[Any]:
        """The loop hooks to add to the pipeline (the governor, when it runs, is shown on the page)."""
        self.telemetry.governor = governor
        return [self.preview, self.telemetry]

    def close(self) -> None:
        self.server.close()
        self.preview.close()
