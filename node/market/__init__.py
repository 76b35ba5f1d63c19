"""The node side of the compute market: negotiation, escrow, execution, delivery, settlement.

Every node is a requester (by default its own account pays for the jobs submitted through its
RPC, like a Golem requestor daemon; a job may instead name a wallet as payer, above) and, when it
has GPUs to sell, a provider. The rules, in the order a job meets them:

1. **Matching** (``protocol/market/matching.py``): the capacity table's signed, unexpired offers;
   healthy GPUs that meet the job's resources, enough of them free, the right executor, price at
   most the job's maximum, the ledger's stake at least the minimum, and the job's ``[limits]`` within
   the offer's signed ``OfferedLimits`` (``limits_refusal``; see "Selling only through a sandbox that
   works" below); ranked by price, then stake.
   A quote may name any announced unit that fits, busy or not (busy-ness lags the announcements).
2. **Negotiation** on ``/dcent/market/1.0.0``, one stream per attempt, driven by the pure state
   machines of ``protocol/market/negotiation.py``. The provider reserves the quoted GPUs in its
   allocator under the quote's id at once (so two quotes never promise one unit), releases them
   when the quote expires or is refused, and moves them to the contract's job id when it
   countersigns. It records the contract in its store *before* sending the countersignature. It
   refuses a quote for limits it does not offer (``LimitsNotOffered`` 4045) and every quote while it
   is not selling (``ProviderNotReady`` 4046). A refusal, a timeout or a broken stream moves the
   requester to the next offer.
3. **Deadline**: the requester asks for ``height + escrow_wait + 2 x run + settle_margin`` blocks,
   the provider refuses less than ``height + escrow_wait + run + settle_margin / 2``. Run blocks are
   counted at the block-time floor (``timeout_commit_ms``), so a deadline is never shorter in wall
   time than intended.
4. **Escrow**: the requester's node submits ``escrow_open`` through its *tx lane* (one transaction
   of the node's account at a time, each waiting for its block; a transaction that stops applying
   is dropped and reported, and the mempool lets a new transaction take the nonce of a waiting one
   that can never apply; the lane's transactions are exempt from the mempool's admission
   control, so a flood cannot stop a settlement). The provider starts the job on the first committed block that holds the
   escrow (single-slot finality: committed is final) and gives up, releasing the GPUs, if it is not
   there within ``escrow_wait_blocks``.
5. **Execution** in the configured executor, pinned to the GPUs sold (``CUDA_VISIBLE_DEVICES`` =
   their UUIDs, only their ``/dev/nvidia*`` nodes bound; simulated GPUs bind none), under every
   limit the spec's ``[limits]`` sets. Its lines stream live to the requester (below). A job that
   could not start at all still gets a receipt: ``provider_error``, exit -1, 0 ms; settling it
   refunds the requester in full and slashes the collateral, as a refund at the deadline would.
6. **Delivery** on ``/dcent/result/2.0.0`` (``protocol/market/delivery.py``,
   ``node/market/delivery_link.py``), header first: the requester reads a 256-byte header (contract
   hash, size) and, having read nothing more, refuses a delivery for no open contract of its own,
   from a peer other than the contract's provider, or over ``delivery_limit(output_limit_bytes)``
   (outputs + 2 x 4 MiB logs + file entries + 4 KiB, never over the 64 MiB frame cap); then it
   answers ``ready`` and reads exactly that many bytes: the outputs (``out/``), the capped logs and
   the receipt signed by the provider. (1.0.0 enforced the size only on send: a stranger could
   make a node read a 200 MB frame, 99 -> 698 MB RSS.) The requester countersigns only a
   receipt for its contract, signed by its provider, within the contract's GPU-seconds, with
   outputs within the job's limit that hash to the receipt's ``output_hash``; otherwise it answers
   with a refusal carrying the error's code (4061-4064). It keeps one receipt per contract.
7. **Settlement** (the tables of ``protocol/market/settlement.py``; each job waits on the chain
   feed for its contract's events and the heights its rule names, never polling every block):
   the provider submits ``escrow_settle`` with both signatures; the requester does so itself if
   the escrow is still open ``SETTLE_GRACE_BLOCKS`` later. Without a countersignature the
   provider claims and finalizes after the window; the requester disputes a claim for a result it
   never accepted; past the deadline with no delivery and no claim, it refunds (slashing the
   collateral).
8. **Restart**: job records live in the store's ``jobs`` table. A requester keeps watching its open
   escrows (and refunds at the deadline); a provider still settles or finalizes what it delivered
   and still runs a contract whose escrow has not opened yet. A job that was *running* when its
   provider stopped is lost with its process: the requester's refund slashes the collateral,
   which is what collateral is for.

Cancelling (``job_cancel``) stops a job only while it is matching or negotiating; once its escrow is
open the contract runs to settlement or to a refund at its deadline. Known gaps: the requester
cannot check the metering beyond the contract's cap (the ledger pays ``min(metered, max)``); MIG
units bind their parent's device node but not the MIG capability nodes.


**The honest CLI.** ``job submit --wait`` prints the outcome, exit status and what was paid, and
exits 0 only for a settled job that ``completed`` with exit status 0; any other end exits 1 with
``error <code>: <message>``: ``JobDidNotComplete`` 5962, ``ProviderFailed`` 5959, ``NothingDelivered``
5960, ``ClaimDisputed`` 5961. ``make demo`` runs ``testnet up --executor auto``, checks the trained
model, exits non-zero unless the job completed with exit 0 and the model fits, and says whether
the provider ran it sandboxed or UNSANDBOXED and why (in the Debian 12 cleanroom, a chroot without
user namespaces, it passes unsandboxed and says so three times).

``bench/job_overhead.py`` measures escrow final -> first live line at the requester and job exit ->
settlement block. Figures from a loaded 2-core machine (3 jobs; to be re-measured quietly): first
line printed p50 ~163 ms, at the requester ~166 ms; exit -> settlement committed p50 ~256 ms
(block floor 100 ms).
"""
