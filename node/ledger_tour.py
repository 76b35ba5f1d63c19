"""The ledger at work on the local testnet genesis, end to end, in one process (`python -m node.ledger_tour`).

Loads ``configs/genesis.toml``, then builds and applies real signed blocks: transfers, a
delegation (the provider runs no validator node, so it delegates to one rather than staking), a
compute contract that requester and provider both sign (escrowed, run for metered GPU-seconds,
settled against a receipt both sign), and a governance vote that changes the fee-burn share. It
prints balances before and after, issuance, burned fees and rewards, and checks the supply
invariant after every block. `make demo` (node/demo.py) shows the same on a live 4-node testnet.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from protocol.contracts import OUTCOME_COMPLETED, ContractTerms, SignedContract, UsageReceipt
from protocol.crypto import PrivateKey
from protocol.ledger.block import BlockContext, BlockResult, apply_block
from protocol.ledger.genesis import Genesis, genesis_state
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Delegate, GovPropose, GovVote, Msg, OpenEscrow, Settle, Transfer, sign_tx
from protocol.units import DCT, format_amount, format_ratio, percent

GENESIS_PATH = Path(__file__).resolve().parent.parent / "configs" / "genesis.toml"


class DemoChain:
    """Signs transactions with the right nonces and applies blocks, rotating the proposer."""

    def __init__(self, state: LedgerState, validators: Sequence[PrivateKey]) -> None:
        self.state = state
        self.validators = validators
        self.fee = state.params.min_fee

    def tx(self, key: PrivateKey, msg: Msg, nonce_offset: int = 0) -> bytes:
        nonce = self.state.account(key.address.raw).nonce + 1 + nonce_offset
        return sign_tx(key, self.state.chain_id, nonce, self.fee, msg)

    def block(self, txs: Sequence[bytes], label: str, *, quiet: bool = False) -> BlockResult:
        height = self.state.height + 1
        proposer = self.validators[height % len(self.validators)].address.raw
        signers = tuple(v.address.raw for v in self.validators)
        result = apply_block(self.state, BlockContext(height, proposer, signers), txs)
        self.state.check_invariants()
        if result.provider_rewards:
            paid = ", ".join(format_amount(amount) for _, amount in result.provider_rewards)
            print(
                f"  block {height:>3}  epoch end: compute providers rewarded {paid} by protocol fees burned"
            )
        if quiet:
            return result
        print(
            f"  block {height:>3}  {len(txs)} tx  minted {format_amount(result.minted):>18}  "
            f"burned {format_amount(result.burned):>16}  {label}"
        )
        return result

    def idle_until(self, height: int) -> None:
        start = self.state.height + 1
        minted = 0
        while self.state.height < height:
            minted += self.block([], "", quiet=True).minted
        print(f"  blocks {start}-{height}: empty, minted {format_amount(minted)} (voting period)")


def main() -> int:
    genesis = Genesis.from_text(GENESIS_PATH.read_text(), fmt="toml")
    state = genesis_state(genesis)
    validators = [PrivateKey.from_label(f"validator-{i}") for i in range(4)]
    faucet = PrivateKey.from_label("faucet")
    alice = PrivateKey.from_label("demo-requester")  # rents GPUs
    bob = PrivateKey.from_label("demo-provider")  # sells GPUs
    names = {k.address.raw: n for k, n in ((faucet, "faucet"), (alice, "requester"), (bob, "provider"))}
    names.update({v.address.raw: f"validator-{i}" for i, v in enumerate(validators)})
    chain = DemoChain(state, validators)

    print(f"dcent demo: chain {genesis.chain_id}, genesis {genesis.genesis_hash().hex()[:16]}...")
    print(f"  supply {format_amount(state.total_supply())}, {len(state.validator_set())} validators\n")
    before = {address: state.balance(address) for address in names}

    print("Blocks:")
    chain.block(
        [
            chain.tx(faucet, Transfer(alice.address.raw, 5_000 * DCT)),
            chain.tx(faucet, Transfer(bob.address.raw, 2_000 * DCT), nonce_offset=1),
        ],
        "faucet funds a requester and a provider",
    )
    chain.block(
        [chain.tx(bob, Delegate(validators[0].address.raw, 500 * DCT))],
        "provider delegates 500 DCT to validator-0",
    )

    terms = ContractTerms(
        chain_id=state.chain_id,
        requester=alice.public_key.raw,
        provider=bob.public_key.raw,
        job_hash=hashlib.sha256(b'{"argv": ["python3", "train.py"]}').digest(),
        gpu_uuids=("GPU-SIM-demo-0", "GPU-SIM-demo-1"),
        price_per_gpu_second=2_000_000,  # 0.002 DCT per GPU-second
        max_gpu_seconds=7_200,
        collateral=100 * DCT,
        deadline_height=state.height + 50,
        salt=b"demo-contract-1",
    )
    contract = SignedContract(terms, terms.sign(alice), terms.sign(bob))
    chain.block([chain.tx(alice, OpenEscrow(contract))], "requester escrows a contract both signed")
    receipt = UsageReceipt(
        chain_id=state.chain_id,
        contract_hash=terms.contract_hash(),
        outcome=OUTCOME_COMPLETED,
        gpu_ms=5_400_000,  # 45 minutes on 2 GPUs
        exit_status=0,
        output_hash=hashlib.sha256(b"model weights").digest(),
    )
    chain.block(
        [chain.tx(bob, Settle(receipt, receipt.sign(bob), receipt.sign(alice)))],
        "contract settled: 5,400 GPU-seconds metered",
    )

    old_share = state.params.fee_burn_share
    chain.block(
        [chain.tx(validators[0], GovPropose("fee_burn_share", percent(75), 10 * DCT))],
        "proposal: burn 75% of fees",
    )
    chain.block(
        [chain.tx(v, GovVote(1, "yes")) for v in validators[:3]],
        "3 of 4 validators vote yes",
    )
    chain.idle_until(state.proposals[1].end_height)
    print(
        f"\nGovernance: proposal 1 {state.proposals[1].status}; fee_burn_share "
        f"{format_ratio(old_share)} -> {format_ratio(state.params.fee_burn_share)}"
    )

    chain.block(
        [chain.tx(alice, Transfer(bob.address.raw, 1 * DCT))],
        "the next fees burn at the new share",
    )

    print("\nBalances (before -> after):")
    for address, name in sorted(names.items(), key=lambda item: item[1]):
        print(
            f"  {name:<12} {format_amount(before[address]):>26} -> {format_amount(state.balance(address)):>26}"
        )
    v = state.vars
    print(
        f"\nIssued {format_amount(v['minted'])}, burned {format_amount(v['burned'])}, "
        f"community pool {format_amount(v['community_pool'])}, provider pool {format_amount(v['provider_pool'])}"
    )
    print(f"Supply invariant holds at height {state.height}; state hash {state.state_hash().hex()[:16]}...")
    print("demo complete: contract settled on the ledger")
    return 0


if __name__ == "__main__":
    sys.exit(main())
