"""dcent's peer-to-peer layer: the host interface, its libp2p and in-memory implementations.

``node/host.py`` (``P2PHost``) is dcent's one interface over py-libp2p; with it, only
``node/p2p/host_config.py``, ``node/p2p/libp2p_adapters.py`` and ``node/p2p/libp2p_tuning.py`` import
libp2p. The rest of the node programs against ``node.p2p.interface.Host``, which ``MemoryHost``
(``node/p2p/memory.py``) also implements for in-process tests of the layers above.

``libp2p==0.8.1`` is pinned exactly in ``pyproject.toml``: several workarounds below read private
state or match message text of this exact version. Where the table names a test (in
``tests/integration/test_host*.py``, ``test_hostile_peers.py``), that test fails when the workaround
is removed; for rows 1-18 this was checked by deleting each one in turn, for row 19 by running the
test on the stock ``Pubsub``.

The workarounds
---------------

| # | libp2p 0.8.1 behaviour | What we do | Where | Test |
|---|---|---|---|---|
| 1 | ``new_host()`` accepts plaintext and secio next to Noise | ``sec_opt`` holds Noise only | ``P2PHost._build_libp2p_host`` | ``test_only_noise_with_yamux_is_accepted[plaintext-yamux-False]`` |
| 2 | every ``connect()`` waits a fixed 250 ms (``swarm._HAPPY_EYEBALLS_DELAY``), even after the last address | set the module constant to 0 before a host starts (process-wide; it is read at call time from the module namespace) | ``node/p2p/libp2p_tuning.py`` | connect measured ~5 ms; the host tests' run time |
| 3 | only the first TCP address of a peer is dialled; a failed dial puts the peer in a 60 s negative cache | before every dial of a peer we are not connected to: ``peerstore.clear_addrs(pid)``, ``swarm.unblock_peer(pid)``, then add only the address we mean; ``open_stream`` to a disconnected peer unblocks it too | ``P2PHost.connect``, ``P2PHost.open_stream`` | ``test_peer_restarted_on_a_new_address_is_reached_there[libp2p]``, ``test_bootstrap_peer_back_on_its_port_is_redialled_despite_failed_dials`` |
| 4 | GossipSub defaults: heartbeat 120 s, spam cap 10 msg/s per forwarder and topic (also applied to our own publishes), adaptive gossip stretching heartbeats, eclipse protection grafting until the mesh spans 3 IPs | every parameter set explicitly (see ``GossipParams``' docstring for each reason); v1.1 only | ``node/p2p/gossip_params.py``, ``P2PHost._build_gossipsub`` | ``test_gossip_from_one_host_reaches_the_other_three[libp2p]`` |
| 5 | ``publish()`` has no backpressure: a full outbound peer queue (32) drops silently; a full subscription queue (32) drops silently; our own publishes above the spam cap are dropped by our own router | ``publish`` paces our publishes per topic to half the spam cap (receivers count wall-clock seconds and jitter bunches messages), waits up to ``publish_wait_s`` for room in full peer queues, then counts and logs the peers that miss it (``gossip_outbound_dropped``) or raises ``GossipBackpressureError`` if none can take it; a pump drains libp2p's subscription queue at once into our own channels (``subscriber_buffer``, default 1024), counting drops (``gossip_inbound_dropped``) | ``P2PHost.publish``, ``P2PHost._pump``, ``PublishPacer`` | ``test_publish_paces_under_the_spam_cap_instead_of_dropping``, ``test_publish_to_a_hung_peer_reports_backpressure_instead_of_dropping``, ``test_a_slow_subscriber_loses_messages_visibly`` |
| 6 | mplex leaks ~3 KB per stream and is 5x slower | ``muxer_opt`` holds yamux only | ``P2PHost._build_libp2p_host`` | ``test_only_noise_with_yamux_is_accepted[noise-mplex-False]`` |
| 7 | leaving ``host.run()`` leaves the TCP listener open. Root cause found here: stopping the swarm's service cancels ``Swarm.run``'s own cleanup half-way; its first ``SwarmConn.close()`` sets ``event_closed`` and is cancelled before closing the socket, so a later ``Swarm.close()`` skips that connection: the socket leaks and the peer only notices through a failed ping. The listener, a trio *system* task, is never closed | ``run()`` calls ``host.close()`` itself, shielded, with a 5 s deadline, *before* leaving ``host.run()``'s context, on normal exit and on cancellation alike | ``P2PHost.run``, ``P2PHost._close_libp2p`` | ``test_close_releases_the_listener_and_the_port``, ``test_cancelling_run_also_releases_the_listener``, ``test_host_restarted_on_a_new_port_is_reconnected_with_its_bootstrap_peer[libp2p]`` (the seed sees the drop at once) |
| 8 | listeners set ``SO_REUSEPORT``: a second daemon binds the same fixed port silently | before listening on a fixed port, bind a probe socket *without* ``SO_REUSEPORT`` (with ``SO_REUSEADDR``, so TIME_WAIT leftovers of our own restart do not count); it fails exactly when someone listens there: ``PortInUseError`` (5213). Port 0 is not probed. A race between two daemons starting in the same instant remains, and a process that does not probe can still join our port | ``node/p2p/host_config.py: ensure_port_free`` | ``test_double_bind_of_a_fixed_port_fails_clearly`` |
| 9 | a hung peer is never noticed without health monitoring; with it, one late ping aborts the connection | ``ConnectionConfig(enable_health_monitoring=True, health_check_interval=1 s, ping_timeout=3 s, health_warmup_window=0, abort_connection_on_ping_failure=True)`` (interval and timeout are ``HostConfig`` fields), and ``PingTolerance`` wraps libp2p's ping so that only the third failure in a row drops the connection (within ~12 s; see "Liveness under load"); the bootstrap loop redials | ``P2PHost._build_libp2p_host``, ``node/p2p/libp2p_tuning.py`` | ``test_hung_peer_is_noticed_and_dropped`` (a TCP relay that stops forwarding), ``tests/unit/test_libp2p_tuning.py`` |
| 10 | ``import libp2p`` sets the ``libp2p`` logger to ``propagate=False`` without a handler (WARNING+ goes to stderr through logging's last resort); normal use logs ERROR lines for benign races | a handler on the ``libp2p`` logger re-emits every record through ``dcent.p2p.libp2p.<module>``; INFO becomes DEBUG (internal state, e.g. the auto-connector's watermarks every 30 s); the known benign records become DEBUG (list below) | ``node/p2p/logbridge.py`` | ``test_libp2p_logs_are_routed_into_ours_with_benign_noise_demoted`` |
| 11 | discovery | bootstrap list only (dialled at start, redialled with exponential backoff and jitter whenever it drops); no mDNS, no DHT | ``node/p2p/reconnect.py`` | ``test_bootstrap_peer_that_drops_us_is_redialled`` |
| 12 | yamux drops a stream's bookkeeping when a RST arrives, so the reader sees a clean EOF instead of a reset | on EOF, look at the muxed stream's ``reset_received`` flag and raise ``StreamResetError`` | ``Libp2pRawStream.read`` | ``test_oversize_frame_is_refused_with_a_typed_error[libp2p]`` |
| 13 | a stream to a protocol the peer does not serve fails with a plain ``MultiselectClientError("protocols not supported ...")`` (the per-protocol ``ProtocolNotSupportedError`` is swallowed), wrapped in ``StreamFailure``, after an ERROR log dump | recognise the message prefix; raise ``ProtocolNotSupportedError`` (5252); demote the ERROR dump | ``_is_protocol_refusal`` | ``test_bad_input_gets_typed_errors_and_changes_nothing[libp2p]`` |
| 14 | ``new_host()`` takes no ``RetryConfig``; the swarm's default retries each failed dial 3 times (0.1 + 0.2 + 0.4 s) inside one dial | build the swarm with ``new_swarm(retry_config=RetryConfig(max_retries=0), ...)`` and ``BasicHost`` ourselves; our reconnect loop does the backing off | ``P2PHost._build_libp2p_host`` | - |
| 15 | ``Swarm.listen()`` returns ``False`` instead of raising, and ``BasicHost.run()`` ignores it | after ``host.run()``, no transport address means ``ListenError`` (5214) | ``P2PHost.run`` | - |
| 16 | the auto-connector dials known peers up to the middle of the watermarks every 30 s (it skips loopback and private addresses) | watermarks: ``min_connections = low = 0``, ``high = max_connections = 2 * max_peers``; nothing relies on it | ``P2PHost._build_libp2p_host`` | - |
| 17 | ``NetStream.close()`` marks both directions closed; a half-close needs ``close_write()`` (only on the class, not on ``INetStream``) | ``Stream.close_write()`` maps to it; requests half-close after sending | ``Libp2pRawStream`` | ``test_two_hosts_connect_and_exchange_a_framed_request`` |
| 18 | stream handlers run in the connection's nursery: an exception escaping a handler would take down every stream and the gossip session to that peer | ``run_stream_handler`` contains it: typed refusals (``P2PError``, ``ProtocolError``) reset the stream and are scored by the guard; anything else is a bug, logged with its traceback, and resets only that stream | ``node/p2p/interface.py`` | ``test_a_crashing_handler_costs_one_stream_not_the_connection`` |
| 19 | gossip sequence numbers start at ``int(time.time())`` + 1 per message: reused after a restart, so the restarted node's messages are dropped as seen | ``RestartSafePubsub._next_seqno``: ``max(previous + 1, time_ns())`` (see "Message identity across restarts") | ``node/p2p/libp2p_adapters.py`` | ``test_a_restarted_publisher_is_heard_after_publishing_many_messages`` |
| 20 | topic validators answer a bool (no IGNORE); a sync validator runs inline in the router's per-message task, and one that raises ends that task | the host wraps ours: verdict and reason, REJECT scored against the forwarder, IGNORE only counted; a crash is logged, counted (``internal``) and answered ``False`` | ``P2PHost._register_validator``, ``_validate`` | ``test_invalid_gossip_stops_at_the_first_node_and_valid_gossip_crosses_it`` |
| 21 | no connection gate by peer id (the ``ConnectionGate`` filters IP addresses only) | the swarm notifee closes a banned peer's connection as it arrives; ``pubsub.add_to_blacklist`` for the ban's length also drops its messages relayed by others; our dials refuse it | ``PeerTable.connected``, ``P2PHost._enforce_ban`` | ``test_a_peer_past_the_threshold_is_banned_disconnected_and_refused_and_shown`` |
| 22 | yamux sends a WINDOW_UPDATE for almost every read (``PY_YAMUX_RELEASE_ON_READ`` on): one tiny encrypted frame per ~7 KiB of a bulk stream, and the sender gets credit in small steps; it also re-reads every ``PY_YAMUX_*`` setting from the environment on each frame and read | credit released once half the window is read (go-yamux's rule; the window sizes, so what a peer can make us buffer, are unchanged): release-on-read off, and libp2p's "partial slack" rule, which still credited about every other read of a stream of small messages, replaced (``_half_window_credit``; a near-idle 4-validator chain: 59 -> 46 ms of CPU per block per node); the settings read once at start; ``PY_YAMUX_RELEASE_ON_READ`` in the environment still decides (set, libp2p's own rule runs) | ``node/p2p/libp2p_tuning.py`` | ``tests/unit/test_libp2p_tuning.py`` |
| 23 | a full 64 KiB yamux frame is 17 bytes too long for one Noise message (65,519 bytes of plaintext), so each went out as two encryptions and two writes | our frames are capped at 65,519 bytes with the header (``YAMUX_MAX_FRAME_BYTES``); we accept any frame length up to the window, so 64 KiB senders work as before | ``node/p2p/libp2p_tuning.py`` | ``tests/unit/test_libp2p_tuning.py``, ``tests/integration/test_host_framing.py`` |
| 24 | pubsub attaches the host's signed peer record to every RPC, rebuilding the host's address list each time to compare, and checks the record's Ed25519 signature on every RPC it receives: 5% of a validator's CPU at 250 tx/s, ~8% on a near-idle chain, more than consensus (issue 14) | ``SignedRecordCache``: the record sent is reused for 10 s; a peer's record byte-identical to the one accepted from it within 10 s is taken on its bytes (the signature covers them); any other record is checked as before | ``node/p2p/libp2p_tuning.py`` | ``tests/unit/test_libp2p_tuning.py`` |
| 25 | pubsub's teardown of a blacklisted peer resets its stream, then deletes it from ``peers``; the reset wakes the stream's reader, whose dead-peer handler may delete it first: the ``KeyError`` ended the pubsub service and the node (a ban could stop us) | the teardown wrapped: a peer already removed is left removed, its subscriptions forgotten | ``node/p2p/libp2p_tuning.py`` | ``tests/unit/test_libp2p_tuning.py`` |
| 26 | a socket write to a peer that keeps its TCP connection open but stops reading waits forever, holding the connection's write lock: every writer on that connection (gossip, stream opens and resets, the health monitor's close) queues behind it for good (a provider's job never finished: its live output to a stopped requester waited on such a connection) | each socket write is given up after ``SOCKET_WRITE_STALL_S`` (30 s) and the socket closed, which fails the connection's streams and frees its locks | ``node/p2p/libp2p_tuning.py`` | ``tests/unit/test_libp2p_tuning.py`` |
| 27 | a yamux writer whose send window is empty polls it every 10 ms (up to 5 s): credit that arrives at once is seen up to 10 ms later, so a bulk sender that outruns its reader idles ~10 ms each time (the blob bench's server: ~250 such sleeps, ~2.7 s, over 2 GiB) | the send window is a data descriptor whose increase wakes the waiting writer; so does ``closed`` becoming true (a reset, RST or FIN, shutdown); ``write`` is libp2p's otherwise (same locks, frames, counters and 5 s limit), and still looks again by itself every ``ZERO_WINDOW_RECHECK_S`` (50 ms) | ``node/p2p/yamux_send.py`` | ``tests/unit/test_yamux_send.py`` |
| 28 | gossipsub's heartbeat trims a mesh above ``degree_high`` with PRUNEs but keeps no backoff for the peers it pruned (its score-based replacement does, as go-libp2p's heartbeat does): as soon as our mesh fell below ``degree_low`` we grafted them again, and each, having noted our PRUNE, called it a GRAFT flood, penalised us and pruned us back. With degrees 3/2/4 on 8 validators two nodes were left with no consensus mesh and stopped at height 2; with the default degrees a 16-node testnet logged 560 such floods and committed one block in 115 s | every peer the heartbeat prunes gets the backoff its PRUNE announced (``prune_backoff_s``); a 16-node testnet then logged 3 | ``node/p2p/libp2p_tuning.py`` | ``test_a_peer_trimmed_from_the_mesh_is_not_grafted_again_within_its_backoff`` |

Log records demoted to DEBUG (logbridge.BENIGN)
-----------------------------------------------

Anyone can open a TCP connection to a node and fail a handshake, so logging that at ERROR would let
a stranger fill the error log. ``BENIGN`` lists each record seen in normal operation and demoted, with
why (failed handshakes offering plaintext, secio or mplex; dials to a peer that is down; the stream
failure dump before a typed error; yamux racing our own close). Kept: "Health check failed" and
"Rate limit exceeded for peer" (WARNING). To see libp2p's own DEBUG lines, lower the ``libp2p``
logger's level.

Decisions
---------

- **Identity.** The node key is a 32-byte Ed25519 seed in ``<home>/keys/node_key``, 64 hex
  characters and a newline (the layout ``node/config.py`` documents), mode 0600, directory 0700.
  ``load_or_create_node_key`` writes a new key to a 0600 temporary file and hard-links it into
  place: no reader sees a partial or world-readable key, and two processes racing end up with the
  same key. A key file accessible by group or others is **refused** (``NodeKeyError`` 5211, with the
  ``chmod 600`` that fixes it), as ssh refuses such private keys: a leaked node key lets anyone
  impersonate the node. The libp2p keypair is built from the same seed, so the peer id
  (``12D3KooW...``) derives from the node key; ``node.p2p.identity`` computes it without libp2p
  (``peer_id_from_seed``, ``peer_id_from_public_key``, ``public_key_of_peer_id``), so upper layers and
  the memory host map keys to peer ids without importing libp2p.
- **Frames.** A 4-byte big-endian length, then the body (not libp2p's varint: no non-minimal
  encodings, an obvious truncation). The receiver names its limit on every read and refuses a
  larger frame from the prefix alone, resetting the stream. Hard cap 64 MiB per frame; each
  protocol's own limit (proposal 16 MiB, sync request 1 KiB / response 64 MiB, push 16 MiB a
  frame, tx 8 MiB, market 2 MiB, result header 256 B, job status 1 KiB, ...) is in the table of
  ``docs/protocol.md``.
- **Gossip delivery.** Our own publishes reach our own subscriptions (libp2p does this; the
  memory host copies it). ``sender`` is the originator, authenticated by libp2p's strict signing.
- **Reconnection.** Bootstrap peers only ("persistent peers" in CometBFT's words): backoff from
  0.5 s doubling to 30 s, +-20% jitter; the backoff restarts only after a connection stayed up
  10 s, so a peer that accepts and drops us is not redialled in a tight loop. ``disconnect()`` of a
  bootstrap peer is followed by a redial.
- **Wildcard listen addresses** (``/ip4/0.0.0.0/...``) are reported as bound; peers need a routable
  address in their bootstrap lists (no announce-address setting yet).
"""
