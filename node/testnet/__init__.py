"""The local multi-node testnet: layout (homes, genesis, ports), node processes, readiness.

``dcent testnet up`` lays out a genesis, a faucet key and one home per node (ports derived from a
base port: p2p ``P+10i``, RPC ``+1``, metrics ``+2``; node i dials nodes 0..i-1 and keeps redialling
them, so any node can restart and the mesh closes up again), then starts real ``dcent node run``
processes, each under a small standard-library supervisor (``node/testnet/supervisor.py``): ``up``
returns with the nodes running, and ``down``, run later by another process, still learns each node's
real exit code from the supervisor's exit file. Readiness is judged over RPC (answers, N-1 peers,
a new block). No containers: the anchors (Golem goth, Bacalhau devstack, Akash kind) all need them.

Operating a testnet under faults (issue 14): ``dcent testnet stop | start | restart | kill NODE...``
act on single nodes (``kill`` is a crash: SIGKILL, no shutdown code). ``up --restart on-failure``
(kept in ``testnet.json``, used by later ``start``s) makes each supervisor restart its node after a
crash, as systemd's ``Restart=on-failure`` would: back-off doubling from 1 s to 30 s, reset after a
minute of uptime, and it gives up after ten quick failures in a row (a crash loop is a bug to read
in the log, not to hide). A clean exit or a stop signal ends it; ``stop`` signals the supervisor, not
the node, so a node that exits non-zero while shutting down is never restarted behind the
operator's back. The supervisor's state file (``node-i/node.supervisor``: its pid and start time,
policy, restarts, ``running``/``backoff``) lets ``start`` refuse a node that is about to come back and
``status`` show ``restarting``. ``status`` sees a node however it was started (the pid file and the
RPC), and judges the chain as a whole: the newest block any node stores, how long ago it was
made, ``STALLED`` past ``--stall-after`` (15 s; blocks come every second), and the validators missing
from it: not running, restarting, not answering, or absent from the newest commit's signatures
(``chain_getBlock`` returns ``signers``, as CometBFT's block carries its last commit).

``dcent testnet faucet`` is idempotent across retries (issue 12 saw a "not committed within 60 s"
transfer commit later, and the retry pay twice). A journal, ``DIR/faucet/requests.json`` under a
lock, keeps each request's signed bytes, hash and nonce (named by ``--request-id``, or by recipient
and amount); a retry waits for or resubmits those same bytes while their nonce is free, and signs
anew only once another transaction took that nonce, which proves the first never happened.

``tests/e2e/framework.py`` drives such networks like bitcoin's functional test framework: derived
ports per pytest worker, a logged seed that replays keys, chain id and scenario choices
(``DCENT_E2E_SEED``), deadline-bounded waits, start / stop / kill -9 / restart, a partition by
SIGSTOP (the node's sockets stay open but answer nothing) and ``sync_all`` comparing block and state
hashes. ``test_netns.py`` puts four nodes in four network namespaces on veth links to one bridge and
partitions by taking a link down (root only; skipped with the reason elsewhere).

``dcent testnet up --netns [--latency MS --jitter MS --loss PCT]`` builds that fabric for a testnet
(``node/testnet/netns.py``: one namespace per node, veth links to one bridge, the manifest
recording each node's host and namespace; ``down`` removes it). Latency is a round-trip time, half
added on each node's link by ``tc netem``; a kernel without ``sch_netem`` gets a userspace switch
on TUN devices instead (``node/testnet/tunshaper.py``), whose delay is a floor under load.
"""
