"""JSON-RPC 2.0 over HTTP: the method table, the dispatcher, the hypercorn server and a client.

JSON-RPC 2.0 over HTTP, served by hypercorn's trio worker inside the node's nursery. The dispatcher
(``protocol.py``) is pure and total: any byte string yields a valid response or none (batches,
notifications, -32700/-32600/-32601/-32602/-32603), and domain errors keep their stable codes
(``error.code`` is the ledger's or node's code, ``error.data.error`` the class name). Authentication is
bitcoind's cookie: 32 random bytes in ``<home>/data/.cookie`` (0600), written after the port is bound
and removed at exit, accepted as HTTP Basic (``__cookie__:<hex>``) or Bearer; checked before anything
else, so an unauthenticated request runs nothing (401). ``Content-Type: application/json`` is
required (415 otherwise; ``application/json-rpc`` and ``application/jsonrequest`` too): it forces
browsers into a CORS preflight, so a web page cannot post to a node on localhost. What hypercorn
does not bound is bounded in ``http_limits.py`` (HTTP/1.1 only, a deadline on each write, a
connection cap), the body's arrival by ``server.py`` (408) and a batch's size of answer and hold on
the event loop by ``protocol.py``: a client without the cookie held memory and connections for good. Non-loopback binds need an explicit ``allow_remote`` and log a warning. Methods are
``namespace_method``, registered with typed parameter schemas; ``python -m node.rpc.reference`` renders
the method reference from the table.

The node serves one table (``node/rpc/node_table.py``: ``NODE_SCHEMA``, bound to a running node's narrow views by ``build_node_table``): the builtins, the
node's read methods (chain, accounts, transactions through the store's ``txs`` index, validators,
governance, economics and its history, capacity and market views, GPUs, ``node_info``, peers and
their scores; ``validator_get/all/list``, ``account_delegations``, ``validator_keyProof``;
``account_grants``, ``account_grantsReceived``; ``account_history``), ``tx_submit`` (signed bytes only: the node never sees a
wallet key; a refusal is the mempool's or the ledger's typed error), the ``job_*`` methods of the
job service and the ``blob_*`` methods of the blob service. Store reads run in worker threads. The
server also writes ``<home>/data/rpc.url`` with the bound URL, so a node started on port 0 can be
found. Prometheus metrics (``node/metrics.py``) are opt-in on a loopback port.

The wallet CLI (``dcent wallet/validator/job/gov``, ``node/wallet/``) is a plain RPC client: it
fetches the chain id, nonce and minimum fee, signs locally, submits bytes and waits for ``tx_get`` to
report the transaction committed. Each command checks the transaction against the node (balance,
bonded stake, validator, grant) before the password is asked for, so one that could never apply
is refused with the ledger's own code (``error NNNN: ...``, exit 1) instead of waiting in a mempool;
out-of-bounds terms (a commission over its maximum, a moniker over 64 characters) are refused
locally before anything is signed. ``validator create`` asks the node it talks to for
``validator_keyProof`` (the node signs the operator's address with its consensus key) and the
operator's wallet signs the transaction carrying the proof: the node's key never leaves it. RPC
heights are typed ``Int(min=0, max=2^63-1)``: a height past it, negative, a float, a boolean or null
is -32602 invalid params, never an internal error (issue 12).
"""
