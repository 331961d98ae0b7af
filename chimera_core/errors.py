"""Error types. A ``ChimeraError`` is the user's to fix: the CLI prints it and exits 2."""

from __future__ import annotations


class ChimeraError(Exception):
    """A problem the user can fix (bad input, bad config, unknown name). Exit code 2."""

    exit_code = 2


class FaultError(ChimeraError):
    """A fault outside the user's input (a server died, a trainer saved nothing). Exit code 1."""

    exit_code = 1


class ConfigError(ChimeraError):
    """Invalid configuration; carries one line per problem, each naming its key path."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


class DataError(ChimeraError):
    """Bad input data; the message names the file, record and field."""


class PluginError(ChimeraError):
    """A plugin failed to load or registered something invalid; names plugin and package."""


class ModelFileError(ChimeraError):
    """A model or policy file that fails its check (checksum, unreadable, NaN/Inf weights).

    The message names the file (and tensor) and how to recover; nothing was published.
    """


class ArtifactError(ChimeraError):
    """Artifact store problem the user must fix (credentials, bucket, bad key)."""


class ArtifactNotFound(ArtifactError):
    """The artifact does not exist."""


class StorageFault(FaultError, ArtifactError):
    """The store failed a write or read it should take (disk full, read-only, unreachable
    after retries). Exit code 1; the message names the store or key and the OS or S3 error."""


SKIP_EXIT_CODE = 99
"""``chimera stage --only`` exits with it when the stage is not selected (Airflow: skipped)."""
