"""Exceptions raised by :mod:`confide`.

Every error of the package is a :class:`ConfideError`; its message is the one line the
``confide`` CLI prints after ``error:`` for the same failure.
"""

from typing import Optional


class ConfideError(Exception):
    """Any failure of a Confide call; ``str(e)`` is the CLI's one-line message."""

    def __init__(self, message: str, job_id: Optional[str] = None) -> None:
        super().__init__(message)
        #: The job the error concerns, when there is one.
        self.job_id = job_id


class DaemonNotRunningError(ConfideError, ConnectionError):
    """This party's daemon does not answer (is ``confide serve`` running?)."""


class DaemonError(ConfideError):
    """The daemon, or the talk with it, failed (bad TLS material, an unexpected answer)."""


class ConfigError(ConfideError):
    """``party.toml`` cannot be read or is invalid."""


class PolicyError(ConfideError, PermissionError):
    """A policy refusal: a party (this one or a peer) does not allow this job on that dataset."""


class UnknownPeerError(ConfideError, ValueError):
    """A peer that is not in ``[peers]`` of the party's configuration."""


class InvalidRequestError(ConfideError, ValueError):
    """A request that can never succeed as sent: unknown dataset, bad column, bad option."""


class PeerUnreachableError(ConfideError, ConnectionError):
    """A peer of the job did not answer."""


class UsageError(ConfideError, ValueError):
    """An argument that cannot work (a malformed peer, an unknown training parameter)."""


class InputError(ConfideError):
    """A file could not be read or written, or its content is invalid."""


class JobFailedError(ConfideError):
    """A submitted job failed while it ran (``job_id`` names it)."""


class JobCancelledError(JobFailedError):
    """A submitted job was cancelled (by ``cancel`` or at another party)."""


class JobNotFoundError(ConfideError, KeyError):
    """No job with that id at this party's daemon."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProofError(ConfideError):
    """An audit proof bundle was rejected by the offline check."""


class AuditError(ConfideError):
    """The daemon's verification of its copy of the audit log failed."""


__all__ = [
    "ConfideError",
    "DaemonNotRunningError",
    "DaemonError",
    "ConfigError",
    "PolicyError",
    "UnknownPeerError",
    "InvalidRequestError",
    "PeerUnreachableError",
    "UsageError",
    "InputError",
    "JobFailedError",
    "JobCancelledError",
    "JobNotFoundError",
    "ProofError",
    "AuditError",
]
