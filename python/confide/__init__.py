"""Confide from Python: PSI, joint training, scoring, risk queries and the audit log of
one party, through its own daemon (the CLI's client code, over the same mutual TLS).

    import confide
    alice = confide.Party("alliance/alice/party.toml")
    r = alice.psi("customers", peers=["bob:customers"])
    model = alice.train("credit", peer="bob:credit", label="default", epochs=10)
"""

from ._native import __version__
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors
from .party import Model, Party, ProofCheck, PsiResult, check

__all__ = ["Party", "PsiResult", "Model", "ProofCheck", "check", "__version__", *_errors]
