"""The simulated chain: a real :class:`LedgerState`, advanced by the ledger's own rules.

Every block that carries a transaction, a provider payout (an epoch boundary with settled work),
a liquidity-mining or standing-offer payout (an epoch boundary while shares are bonded or offers
stand), an unbonding release (of stake or of mining shares) or a governance tally is applied by
:func:`protocol.ledger.block.apply_block`
itself, on real signed transactions: escrow, settlement, the protocol-fee burn, the collateral
slash, staking and unbonding, fees and the fee burn are the ledger's code, not a copy, so a change
to any of those rules in ``protocol/ledger/`` is a change in the simulator. Only the empty blocks
in between are stepped by :mod:`protocol.econsim.kernel`, which writes exactly what ``apply_block``
would have written (the same ``state_hash`` afterwards; ``test_econsim_exactness`` compares them
over 1,000 scripted blocks, block by block and span by span).

Before its first span a chain checks the kernel against ``apply_block`` on a copy of its state
and raises :class:`KernelMismatch` if the two disagree, so a change to end-block's structure
(who is paid what) stops the simulation instead of bending its results.

Every block is signed by the whole active set (``BlockContext.signers``): the simulator models
an honest, live validator set; downtime and double-signing are not part of the economics model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocol.econsim import kernel
from protocol.econsim.errors import KernelMismatch
from protocol.ledger import availability, distribution, mining
from protocol.ledger.block import BlockContext, BlockResult, apply_block
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx

_NO_PROPOSER = bytes(20)


class SimChain:
    """A ledger state plus the machinery to advance it quickly and exactly.

    ``max_span`` caps the empty blocks stepped at once (1 steps the kernel block by block, which
    the exactness test uses to compare every height). ``prune_closed_contracts`` forgets closed
    contract hashes after each block: they only guard against escrowing one contract twice,
    which the simulator never tries, and keeping years of them would make each ``state_hash``
    (computed by every ``apply_block``) grow without bound. It changes no total.
    """

    def __init__(
        self, state: LedgerState, *, max_span: int | None = None, prune_closed_contracts: bool = False
    ) -> None:
        self.state = state
        self.max_span = max_span
        self.prune_closed_contracts = prune_closed_contracts
        self.kernel_blocks = 0
        self.ledger_blocks = 0
        self.functions_spans = 0
        #: Liquidity-mining and standing-offer payouts of every applied block, by address.
        self.liquidity_paid: dict[bytes, int] = {}
        self._checked = False

    @property
    def height(self) -> int:
        return self.state.height

    def context(self, height: int) -> BlockContext:
        signers = tuple(validator.address for validator in self.state.validator_set())
        return BlockContext(height=height, proposer=signers[0] if signers else _NO_PROPOSER, signers=signers)

    def apply(self, txs: Sequence[bytes], *, verified: Callable[[Tx], bool] | None = None) -> BlockResult:
        """The next block, with ``txs``, through ``apply_block`` (``verified`` as there: the
        signatures the caller made itself need no checking). Raises its LedgerError (and then
        nothing changed)."""
        result = apply_block(self.state, self.context(self.height + 1), txs, verified=verified)
        self.ledger_blocks += 1
        for address, reward in result.mining_rewards:
            self.liquidity_paid[address] = self.liquidity_paid.get(address, 0) + reward
        if self.prune_closed_contracts:
            for contract_hash, _ in self.state.closed_contracts.sorted_items():
                self.state.closed_contracts.delete(contract_hash)
        return result

    def advance_to(self, height: int) -> None:
        """Apply empty blocks until the chain is at ``height`` (nothing if it is already there).

        Raises KernelMismatch (see the module docstring)."""
        while self.height < height:
            event = self._next_event(height)
            if event == self.height + 1:
                self.apply(())
                continue
            blocks = event - 1 - self.height if event <= height else height - self.height
            if self.max_span is not None:
                blocks = min(blocks, self.max_span)
            self._step_empty(blocks)

    def _next_event(self, target: int) -> int:
        """The first height after the current one (up to ``target + 1``) whose empty block does
        more than issuance: an unbonding release, the end of a redelegation, a tally, or a
        provider payout."""
        state, height = self.state, self.height
        candidates = [target + 1]
        for queue in (state.unbonding, state.redelegations):
            for release, _ in queue.sorted_items():
                if release > height:
                    candidates.append(release)
                    break
        for _, proposal in state.proposals.sorted_items():
            if proposal.status == "voting" and proposal.end_height > height:
                candidates.append(proposal.end_height)
        for release, _ in state.mining_unbonding.sorted_items():
            if release > height:
                candidates.append(release)
                break
        # An epoch's end pays settled work, liquidity mining and standing offers: apply_block's.
        liquidity = len(state.mining) or len(state.offers)
        if len(state.epoch_work) or liquidity or state.vars["mining_pool"] or state.vars["availability_pool"]:
            epoch = state.params.epoch_length
            candidates.append((height // epoch + 1) * epoch)
        return min(candidates)

    def _step_empty(self, blocks: int) -> None:
        if not self._checked:
            self._self_check()
        state = self.state
        rewarded = state.validator_set()
        result = kernel.span(
            state.total_supply(),
            state.vars["total_bonded"],
            state.vars["inflation"],
            [validator.power for validator in rewarded],
            state.params,
            blocks,
            issued=state.vars["genesis_supply"] + state.vars["minted"],
        )
        _write_span(state, result, [validator.address for validator in rewarded])
        self.kernel_blocks += blocks
        if result.exact_by != "kernel":
            self.functions_spans += 1

    def _self_check(self) -> None:
        """One empty block both ways on copies of the state; they must hash the same."""
        self._checked = True
        if self.state.vars["fee_pool"] != 0:
            raise KernelMismatch("fees are pending outside a block")
        by_ledger = self.state.copy()
        apply_block(by_ledger, self.context(self.height + 1), ())
        by_kernel = self.state.copy()
        rewarded = by_kernel.validator_set()
        result = kernel.span(
            by_kernel.total_supply(),
            by_kernel.vars["total_bonded"],
            by_kernel.vars["inflation"],
            [validator.power for validator in rewarded],
            by_kernel.params,
            1,
            issued=by_kernel.vars["genesis_supply"] + by_kernel.vars["minted"],
        )
        _write_span(by_kernel, result, [validator.address for validator in rewarded])
        if by_ledger.state_hash() != by_kernel.state_hash():
            differing = [
                f"{name}: ledger {value} kernel {by_kernel.vars[name]}"
                for name, value in by_ledger.vars.sorted_items()
                if by_kernel.vars[name] != value
            ]
            raise KernelMismatch(
                "an empty block applied by the kernel differs from apply_block"
                + (f" ({'; '.join(differing)})" if differing else " (in balances or other state)")
            )


def _write_span(state: LedgerState, result: kernel.SpanResult, rewarded: Sequence[bytes]) -> None:
    """Write a span's totals into the state, as ``result.blocks`` calls of end-block would have."""
    state.vars.set("height", state.height + result.blocks)
    state.vars.set("inflation", result.inflation)
    state.add("minted", result.minted)
    # As end-block: the liquidity shares leave the community pool's part for their pots, each
    # while something is bonded / an offer stands (constant over a span: no transactions in it,
    # and an epoch's end or a mining release ends a span).
    state.add("community_pool", result.community - result.mining - result.availability)
    mining.accrue(state, result.mining)
    availability.accrue(state, result.availability)
    state.add("provider_pool", result.provider_pool)
    # Each block accrues each rewarded validator's share to its pending rewards (nothing for 0),
    # exactly as protocol.ledger.distribution.accrue does: sums over the span are the same.
    for consensus_address, reward in zip(rewarded, result.validator_rewards, strict=True):
        distribution.accrue(state, state.consensus_index[consensus_address], reward)
