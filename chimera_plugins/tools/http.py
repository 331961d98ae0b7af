"""HTTP for the online tools: timeouts, retries with exponential backoff, and an LRU cache.

Rollouts ask the same questions again and again (every junior, every revision), so successful
responses are cached per process. Tests pass an ``httpx.MockTransport``; nothing else differs.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from chimera_core.plugins import ToolsConfig

USER_AGENT = "chimera-lab/0.1 (research tools; https://pypi.org/project/chimera-lab)"
Params = Mapping[str, str | int]


def _retryable(exc: BaseException) -> bool:
    """Network faults, rate limits and server errors are worth another try; 4xx are not."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class HttpFetcher:
    """GET with retries and a bounded in-memory cache of successful response bodies."""

    def __init__(
        self,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
        cache_size: int = 512,
    ) -> None:
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cache_size = cache_size
        self.requests = 0  # sent over the wire, retries included
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._client = httpx.Client(
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
        )

    @staticmethod
    def _key(url: str, params: Params) -> str:
        return url + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))

    def _send(self, url: str, params: Params) -> str:
        with self._lock:
            self.requests += 1
        response = self._client.get(url, params=dict(params))
        response.raise_for_status()
        return response.text

    def get_text(self, url: str, params: Params) -> str:
        """The response body, from the cache when this exact request succeeded before."""
        key = self._key(url, params)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=8.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        text = retrying(self._send, url, params)
        with self._lock:
            self._cache[key] = text
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return text

    def get_json(self, url: str, params: Params) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.get_text(url, params))


_shared: dict[tuple[float, int], HttpFetcher] = {}
_shared_lock = threading.Lock()


def shared_fetcher(config: ToolsConfig) -> HttpFetcher:
    """One fetcher (and so one cache) per timeout/retry setting, shared by all tools."""
    key = (config.timeout_s, config.max_retries)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = HttpFetcher(config.timeout_s, config.max_retries)
        return _shared[key]
