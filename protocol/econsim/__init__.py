"""The economics simulator: years of the network in seconds, on the ledger's own rules.

``dcent economics simulate [--scenario FILE] [--years N] [--set PARAM=VALUE ...] [--seed S] --out DIR``
runs years of the network and writes ``series.csv`` (one row per agent step), ``summary.csv`` and
PNG charts (supply, inflation, bonded ratio, burn vs issuance, provider income, GPU-hour price,
providers, utilization). Scenarios are TOML (``configs/economics/``: baseline, demand boom, demand
crash, high burn); ``docs/economics/`` shows and explains the four. The design rule: **the
simulator runs the ledger's own rules, never a copy**, so its numbers change when the rules do.

- **The chain** (``chain.py``) is a real ``LedgerState``. Every block that carries something (agent
  transactions, an epoch's provider payout, an unbonding release, a governance tally) is applied
  by ``apply_block`` on real signed transactions: escrow, settlement, the protocol-fee burn, the
  collateral slash, staking, fees and the fee burn are the ledger's code.
- **The kernel** (``kernel.py``) steps the empty blocks in between (over 99.99% of them), writing
  exactly what ``apply_block`` would: the same state hash afterwards. There is no closed form for
  truncated issuance over many blocks, so it takes no jumps; it does three exact things instead
  (the docstrings of ``kernel.py`` and ``constant_rate.py`` give each and why it is exact): at a
  constant rate, whole windows of up to 2^17 blocks solved as int64 arrays (each block's
  provision is the first block's plus a carry that depends only on the carries before it, so the
  one fixed point of the carry formula, iterated until nothing changes, is the per-block
  sequence; windows are cut so no product overflows 64 bits); while inflation moves, blocks that
  provably cannot reach a bound or the bonded goal skip those tests and are solved the same way
  in windows (``moving_rate.py``: offsets from the window's first block keep products in 64 bits,
  float estimates are corrected by exact wrapped remainders); a constant span is confirmed
  by one ``next_inflation`` call at its supply bound. ``test_econsim_kernel.py``,
  ``test_econsim_constant_rate.py`` and ``test_econsim_moving_rate.py`` (hypothesis: random
  rates, supplies up to the 64-bit edge, spans crossing the goal and the bounds) compare them with the per-block economics functions
  number for number.
- **Guards against drift**: each kernel span re-derives its first block with the ledger's
  functions and, on any difference, recomputes the span block by block through them (slower,
  still exact; ``bench/economics_sim.py`` exits 1 if that happens); before its first span a chain
  checks the kernel against ``apply_block`` and refuses to run (``KernelMismatch`` 1510) if end-block's
  structure changed. ``test_econsim_exactness.py`` compares the state hash of the real ledger and
  the simulator after each of 1,000 scripted blocks.
- **The agents** (``agents.py``: holders bond or unbond on the staking yield against an outside
  rate, providers join or leave on their margin, demand grows and answers price) are explicit
  assumptions, each a scenario parameter. They are the one place in ``protocol/`` with floats:
  only ``+ - * /`` and integer powers (rounded identically by IEEE 754 everywhere), randomness from
  the scenario's seeded SplitMix64, and every float clamped and floored into base units by
  documented rules before it reaches the ledger. A seed gives byte-identical CSV and PNG files.
- **Bad input** (``scenario.py``): the scenario and ``--set`` are the only outside input, and a
  scenario file may come from anyone (a governance debate). Every value is range-checked, with
  errors naming the field's path (``ScenarioError`` 1501, ``UnknownSetting`` 1502; unknown keys are
  refused): at most 100 years, supplies at most 10^9 DCT, counts at most a million, so no setting
  makes a negative or unbounded ledger amount or an unbounded loop. A block the ledger refuses is a simulator bug
  (``SimulationError`` 1511). The CLI exits 0 done, 1 files not written, 2 bad scenario or argument.
- **The pool and both programmes** (``liquidity.py``): the kernel sums each empty block's mining
  and availability cuts and writes them with the ledger's own ``mining.accrue`` /
  ``availability.accrue``; every epoch end with bonds or offers, and every mining release, is a real
  ``apply_block``. Agents (signed transactions): liquidity providers seed a DCT/TUSD pool with
  ``pool_dct`` and bond ``mining_bonded_share`` of it, a trader swaps ``swap_dct_per_day``, the provider
  keeps ``standing_gpus`` standing (never challenged or taken). All off by default;
  ``configs/economics/liquidity.toml`` turns them on, with one-day epochs (each epoch end with bonds
  is a full ledger block). ``test_econsim_liquidity.py`` runs ledger and simulator side by side over
  1,000 blocks: every total and the state hash agree. One simulated year (2 shared cores): 23.4 s
  baseline, 26.8 s with liquidity; the 8% of issuance moved to the programmes comes from the
  community pool, and ~0.7 DCT per standing GPU-hour draws providers in (244 against 235).


**Governance preview** (``dcent gov propose PARAM VALUE --preview``, ``gov show ID --preview``;
``protocol/econview/preview.py``). The CLI reads the chain's totals and parameters, fits the
scenario (the baseline unless ``--scenario``) to the chain's size, and runs the same seed and
agents with and without the change; it prints both columns and writes CSV files and charts to
``--preview-out``. It runs in the CLI's process, never on the node, and signs nothing unless
``--submit`` (then ``--deposit`` is required). Tested on real nodes (``tests/integration/test_gov_preview.py``).
"""
