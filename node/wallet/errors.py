"""The wallet client's errors beyond the keystore's own (codes 5710-5799).

The keystore's errors (5700-5706) live in :mod:`node.wallet.keystore`; everything here is about
talking to a node, reading the user's input, and checking what a node answers. Like every node
error, each class has a stable ``code`` that the CLI prints as ``error <code>: <message>``.

    5710  NodeNotRunning        5711  TxNotCommitted       5712  UnknownWallet
    5713  PasswordUnavailable   5714  InvalidArgument      5715  UnsafeOutputPath
    5716  ResultFilesMismatch    5717  BadNodeAnswer        5718  JobWaitTimeout
    5719  InvalidWalletName     5720  OutputWriteError     5721  InvalidMnemonic
"""

from __future__ import annotations

from node.wallet.keystore import WalletError


class NodeNotRunning(WalletError):
    """No node answers where the client looked: no ``rpc.url`` in the home, or nothing listens."""

    code = 5710


class TxNotCommitted(WalletError):
    """A submitted transaction was not committed before the deadline. It may still commit."""

    code = 5711


class UnknownWallet(WalletError):
    """No keystore in the keystore directory has this name or address."""

    code = 5712


class PasswordUnavailable(WalletError):
    """No usable password: the password file is unreadable or empty, or the two prompts differ."""

    code = 5713


class InvalidArgument(WalletError):
    """A command-line value the wallet cannot use: an amount, a ratio, a seed, a file to read."""

    code = 5714


class UnsafeOutputPath(WalletError):
    """A job result names a file outside the output directory (``../x``, ``/etc/x``, ...)."""

    code = 5715


class ResultFilesMismatch(WalletError):
    """The output files a node returned do not hash to the output hash it reported."""

    code = 5716


class BadNodeAnswer(WalletError):
    """The node answered with something the RPC contract does not allow (a missing field, ...)."""

    code = 5717


class JobWaitTimeout(WalletError):
    """``job submit --wait`` gave up before the job reached a final state. The job goes on."""

    code = 5718


class InvalidWalletName(WalletError):
    """A wallet name that cannot be a keystore file name."""

    code = 5719


class OutputWriteError(WalletError):
    """A job's output file cannot be written under the output directory (permissions, disk full)."""

    code = 5720


class InvalidMnemonic(WalletError):
    """A recovery phrase that is not valid BIP-39: a word count, an unknown word, a bad checksum."""

    code = 5721
