"""The shape of a tool with a web service and a bundled fallback: online first, offline after."""

from __future__ import annotations

from chimera_core.plugins import ToolContext
from chimera_plugins.tools.http import HttpFetcher


class OnlineWithFallback:
    """``run`` asks the service when ``tools.online`` and falls back to the bundled data when it
    fails or finds nothing; subclasses give ``online`` ('' for no match) and ``offline``."""

    service = "the service"

    def __init__(self, fetcher: HttpFetcher | None = None) -> None:
        self._fetcher = fetcher

    def run(self, query: str, context: ToolContext) -> str:
        """The service's answer when online and it has one, else the bundled data's."""
        if context.config.tools.online:
            try:
                if online := self.online(query, context):
                    return online
            except Exception as exc:
                return f"({self.service} unavailable: {type(exc).__name__})\n" + self.offline(
                    query, context
                )
        return self.offline(query, context)

    def online(self, query: str, context: ToolContext) -> str:
        """The service's answer; empty text when nothing matched."""
        raise NotImplementedError

    def offline(self, query: str, context: ToolContext) -> str:
        """The bundled data's answer."""
        raise NotImplementedError
