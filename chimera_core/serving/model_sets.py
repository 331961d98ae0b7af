"""Serving model sets: one vLLM server holds the base model and every role adapter in use.

A model set maps each alias to a version: ``base``, or a registered LoRA adapter served under
its own name (``<alias>-<version>``). ``ModelServing`` starts the server on first need with the
set's adapters and loads those of later sets (or of a version a stage just trained) at runtime,
so a pipeline run, or an evaluation of two sets, keeps one server. ``openai`` aliases keep their
configured endpoint and serve only its model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.lab.models import Endpoint, configured_endpoint
from chimera_core.model_registry import BASE, ModelRegistry
from chimera_core.serving.vllm_server import ServerSpec, VLLMServer

POLICY_ALIAS = "supervisor_policy"  # the bandit's registry alias (not a served model)


def bandit_policy_dir(registry: ModelRegistry, version: str) -> tuple[str | None, str | None]:
    """Local directory and version of the supervisor's bandit policy (None: use the LLM)."""
    if version == "champion":
        version = registry.champion(POLICY_ALIAS)
    if version == BASE:
        return None, None
    return str(registry.fetch(POLICY_ALIAS, version)), version


def adapter_name(alias: str, version: str) -> str:
    """The model name a registered adapter is served under."""
    return f"{alias}-{version}"


def vllm_aliases(config: ChimeraConfig) -> list[str]:
    """The aliases Chimera's vLLM server answers for."""
    return [alias for alias, m in config.models.items() if m.backend == "vllm"]


def base_model(config: ChimeraConfig) -> tuple[Path, str]:
    """The local directory and served name of the base model every vllm alias shares."""
    from chimera_core.serving.model_store import resolve_checkpoint

    aliases = vllm_aliases(config)
    if not aliases:
        raise ChimeraError(f"profile {config.profile!r} has no vllm model aliases to serve")
    path = resolve_checkpoint(config.models[aliases[0]].checkpoint, config)
    return path, path.name


class ModelServing:
    """The vLLM server of one process's stages, started on first need, stopped by ``close``."""

    def __init__(
        self,
        config: ChimeraConfig,
        registry: ModelRegistry,
        *,
        run_id: str = "",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.run_id = run_id
        self.progress = progress
        self.server: VLLMServer | None = None

    def _adapters(self, model_set: Mapping[str, str]) -> dict[str, Path]:
        adapters = {}
        for alias, version in model_set.items():
            if alias not in self.config.models or version == BASE:
                continue
            if self.config.models[alias].backend != "vllm":
                raise ChimeraError(
                    f"model alias {alias!r} is served at {self.config.models[alias].base_url}; "
                    f"Chimera cannot load version {version!r} there. Use backend 'vllm' for an "
                    "alias you train."
                )
            adapters[adapter_name(alias, version)] = self.registry.fetch_adapter(alias, version)
        return adapters

    def start(self, adapters: Mapping[str, Path] | None = None) -> VLLMServer:
        """The running server (started now, with ``adapters``, if it is not up yet)."""
        if self.server is not None:
            self.server.check()  # a server gone for good is reported, not reused
        else:
            base_dir, base_name = base_model(self.config)
            spec = ServerSpec(base_dir, base_name, dict(adapters or {}))
            log_dir = self.config.serving.models_dir.expanduser().resolve().parent / "run"
            server = VLLMServer(spec, self.config.serving, log_dir=log_dir, run_label=self.run_id)
            with _status(self.progress) as note:
                server.start(note)
            self.server = server
        return self.server

    def endpoints(self, model_set: Mapping[str, str]) -> dict[str, Endpoint]:
        """Alias -> endpoint serving the set's version of it (adapters loaded as needed)."""
        adapters = self._adapters(model_set)
        out: dict[str, Endpoint] = {}
        server: VLLMServer | None = None
        if vllm_aliases(self.config):
            server = self.start(adapters)
            for name, path in adapters.items():
                server.load_adapter(name, path)
        for alias, model in self.config.models.items():
            if model.backend == "openai":
                out[alias] = configured_endpoint(model)
                continue
            assert server is not None
            version = model_set.get(alias, BASE)
            name = server.spec.base_name if version == BASE else adapter_name(alias, version)
            out[alias] = Endpoint(server.base_url, name, server.api_key)
        return out

    def offer(self, alias: str, version: str) -> None:
        """Load a just-registered version into a running server (nothing if none runs)."""
        if self.server is not None and alias in vllm_aliases(self.config):
            self.server.check()
            path = self.registry.fetch_adapter(alias, version)
            self.server.load_adapter(adapter_name(alias, version), path)

    def close(self) -> None:
        """Stop the server if this object started one."""
        if self.server is not None:
            self.server.stop()
            self.server = None


@contextmanager
def _status(progress: Callable[[str], None] | None) -> Iterator[Callable[[str], None]]:
    """A transient spinner line for the server's start (or the caller's own progress)."""
    if progress is not None:
        yield progress
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _message: None
        return
    with console.status("starting vLLM") as status:
        yield lambda message: status.update(message)


@contextmanager
def serve_model_set(
    config: ChimeraConfig,
    model_set: Mapping[str, str],
    registry: ModelRegistry,
    serving: ModelServing | None = None,
) -> Iterator[dict[str, Endpoint]]:
    """Endpoints for a model set, on ``serving``'s server or on one started for the block."""
    own = serving is None
    serving = serving or ModelServing(config, registry)
    try:
        yield serving.endpoints(model_set)
    finally:
        if own:
            serving.close()
