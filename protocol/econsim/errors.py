"""Errors of the economics simulator, codes 1500-1599 (unused by the other protocol modules).

Split by whose fault: a scenario or a ``--set`` the user wrote (1501-1509), or the simulator's
own machinery disagreeing with the ledger it drives (1510-1519).
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class EconsimError(ProtocolError):
    code = 1500


class ScenarioError(EconsimError):
    """A scenario file or override is invalid; the message starts with the field's path."""

    code = 1501


class UnknownSetting(ScenarioError):
    """``--set NAME=VALUE`` names neither a ledger parameter nor a scenario setting."""

    code = 1502


class KernelMismatch(EconsimError):
    """The fast empty-block step no longer reproduces ``apply_block``: the ledger's end-block
    rules changed and ``protocol/econsim/kernel.py`` must follow them. Nothing was simulated."""

    code = 1510


class SimulationError(EconsimError):
    """The simulated agents produced a block the ledger refused (a simulator bug)."""

    code = 1511
