"""Error codes are part of the RPC contract: pinned here, unique, and all under ProtocolError."""

from __future__ import annotations

import inspect
from types import ModuleType

from protocol import contracts, crypto, encoding, units
from protocol.errors import ProtocolError
from protocol.ledger import errors, liquidity_errors, snapshot

PINNED = {
    "ProtocolError": 1000,
    "DecodeError": 1001,
    "EncodeError": 1002,
    "CryptoError": 1100,
    "InvalidAddressError": 1101,
    "InvalidKeyError": 1102,
    "BadSignatureError": 1103,
    "AmountError": 1201,
    "LedgerError": 2000,
    "MalformedTx": 2001,
    "WrongChainId": 2002,
    "BadSignature": 2003,
    "BadNonce": 2004,
    "FeeTooLow": 2005,
    "InsufficientFunds": 2006,
    "InvalidAmount": 2007,
    "UnknownTxKind": 2008,
    "AmountOverflow": 2009,
    "InsufficientStake": 2010,
    "Tombstoned": 2011,
    "UnknownValidator": 2012,
    "ValidatorExists": 2013,
    "ConsensusKeyTaken": 2014,
    "BadKeyProof": 2015,
    "InvalidCommission": 2016,
    "CommissionChangeTooSoon": 2017,
    "NotJailed": 2018,
    "JailPeriodNotOver": 2019,
    "UnknownContract": 2020,
    "ContractExists": 2021,
    "ContractClosed": 2022,
    "RefundTooEarly": 2023,
    "NotAParty": 2024,
    "ContractExpired": 2025,
    "BadContractSignature": 2026,
    "ReceiptMismatch": 2027,
    "FreeContract": 2028,
    "UnknownParam": 2030,
    "InvalidParamValue": 2031,
    "DepositTooLow": 2032,
    "UnknownProposal": 2033,
    "VotingClosed": 2034,
    "NoVotingPower": 2035,
    "InvalidVoteOption": 2036,
    "BadBlockHeight": 2040,
    "ClaimPending": 2050,
    "NoClaim": 2051,
    "DisputeWindowOpen": 2052,
    "DisputeWindowClosed": 2053,
    "RefundBlockedByClaim": 2054,
    "TooManyDelegations": 2060,
    "RedelegationInProgress": 2061,
    "ValidatorHasNoTokens": 2062,
    "NotAValidator": 2063,
    "InvalidGrant": 2070,
    "NoGrant": 2071,
    "GrantExpired": 2072,
    "GrantExhausted": 2073,
    "GrantKindNotAllowed": 2074,
    "TooManyGrants": 2075,
    "UnknownAsset": 2300,
    "AssetExists": 2301,
    "TooManyAssets": 2302,
    "NotIssuer": 2303,
    "InsufficientAsset": 2304,
    "SlippageExceeded": 2305,
    "DeadlinePassed": 2306,
    "AmountTooSmall": 2307,
    "PoolEmpty": 2308,
    "NotBonded": 2310,
    "MiningFull": 2311,
    "UnknownOffer": 2320,
    "OfferNotStanding": 2321,
    "ChallengeOpen": 2322,
    "NoChallenge": 2323,
    "ChallengeWindowOpen": 2324,
    "ChallengeWindowClosed": 2325,
    "BadAvailabilityProof": 2326,
    "OwnOffer": 2327,
    "TakePending": 2328,
    "NoTake": 2329,
    "TakeWindowOpen": 2330,
    "TakeWindowClosed": 2331,
    "CollateralTooLow": 2332,
    "PriceTooHigh": 2333,
    "TooManyOffers": 2334,
    "TooManyGpus": 2335,
    "NoQuotePrice": 2336,
    "PoolTooShallow": 2337,
    "QuoteAboveCap": 2338,
    "GenesisError": 2090,
    "ArithmeticFault": 2097,
    "SnapshotError": 2098,
    "InvariantError": 2099,
    "ContractFormatError": 4001,
}
MODULES: tuple[ModuleType, ...] = (encoding, crypto, units, contracts, errors, liquidity_errors, snapshot)


def _error_classes() -> dict[str, type[ProtocolError]]:
    found: dict[str, type[ProtocolError]] = {"ProtocolError": ProtocolError}
    for module in MODULES:
        for name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, ProtocolError) and value.__module__ == module.__name__:
                found[name] = value
    return found


def test_every_error_class_has_its_pinned_code() -> None:
    classes = _error_classes()
    assert {name: cls.code for name, cls in classes.items()} == PINNED


def test_codes_are_unique_and_own_their_range() -> None:
    classes = _error_classes()
    codes = [cls.code for cls in classes.values()]
    assert len(codes) == len(set(codes))
    for name, cls in classes.items():
        assert "code" in vars(cls), f"{name} inherits its code instead of declaring one"
    for cls in [*vars(errors).values(), *vars(liquidity_errors).values()]:
        if isinstance(cls, type) and issubclass(cls, errors.LedgerError):
            assert 2000 <= cls.code <= 2999
