"""config.toml parsing: the shipped template parses; each bad field is named; the RPC and metrics
addresses, and the `dcent node run` flags that override them."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields
from pathlib import Path

import pytest

from node.cli import node_cmd
from node.config import (
    TABLES,
    TEMPLATE,
    ConfigError,
    HomePaths,
    NodeConfig,
    P2PConfig,
    RpcConfig,
    default_config_text,
    parse_config,
    render_config,
)
from node.executor.settings import ExecutorSettings
from node.tomlschema import field_docs
from protocol.consensus.effects import ConsensusConfig

#: The template's RPC address line, whatever port it ships with.
RPC_ADDR_LINE = next(
    line for line in TEMPLATE.read_text().splitlines() if line.startswith('addr = "127.0.0.1:')
)


def test_template_parses_with_safe_defaults() -> None:
    config = parse_config(TEMPLATE.read_text())
    assert (config.rpc.host, config.rpc.allow_remote) == ("127.0.0.1", False)
    assert config.market.executor == "bubblewrap" and not config.market.allow_unsandboxed
    assert config.market.price_per_gpu_second == 1_000_000  # "0.001 DCT"


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        (RPC_ADDR_LINE, 'addr = "localhost"', "rpc.addr"),
        (RPC_ADDR_LINE, 'addr = "127.0.0.1:70000"', "rpc.addr"),
        ('addr = ""', 'addr = "127.0.0.1"', "metrics.addr"),
        ('addr = ""', 'addr = "10.1.2.3:9100"', "metrics.addr"),
        ('executor = "bubblewrap"', 'executor = "chroot"', "market.executor"),
        ("timeout_commit_ms = 500", "timeout_commit_ms = -1", "consensus.timeout_commit_ms"),
        (
            'price_per_gpu_second = "0.001 DCT"',
            'price_per_gpu_second = "cheap"',
            "market.price_per_gpu_second",
        ),
        ("bootstrap = []", "bootstrap = 5", "p2p.bootstrap"),
        ('format = "text"', 'format = "xml"', "log.format"),
        ("max_txs = 20000", "max_txs = 0", "mempool.max_txs"),
        ("max_txs = 20000", "max_txs = true", "mempool.max_txs"),
        ("max_streams = 64", 'max_streams = "many"', "blobs.max_streams"),
        ("max_streams = 64", "max_streams = 5000", "blobs.max_streams"),
        ("escrow_wait_blocks", "escrow_wiat_blocks", "market.escrow_wiat_blocks"),
    ],
)
def test_bad_fields_are_named(replace: str, by: str, field: str) -> None:
    text = TEMPLATE.read_text()
    assert replace in text
    with pytest.raises(ConfigError) as err:
        parse_config(text.replace(replace, by))
    assert err.value.message.startswith(field)


def test_unknown_section_is_refused() -> None:
    with pytest.raises(ConfigError, match="wallet: unknown setting"):
        parse_config(TEMPLATE.read_text() + "\n[wallet]\nx = 1\n")


def test_a_misspelt_key_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'escrow_wait_blocks'"):
        parse_config("[market]\nescrow_wiat_blocks = 5\n")


def test_mempool_and_blob_tables_reach_their_settings() -> None:
    config = parse_config(
        "[consensus]\nmax_block_txs = 700\n[mempool]\nmax_txs = 900\n[blobs]\ngc_interval_s = 7\n"
    )
    assert (config.mempool.max_txs, config.blobs.gc_interval_s) == (900, 7.0)
    # The mempool counts blocks in the consensus block size; it cannot be set apart from it.
    assert config.mempool.max_block_txs == 700
    with pytest.raises(ConfigError, match=r"set consensus\.max_block_txs"):
        parse_config("[mempool]\nmax_block_txs = 3\n")


def test_the_template_states_the_defaults_of_what_it_sets() -> None:
    assert parse_config(TEMPLATE.read_text()) == NodeConfig()


def test_rpc_defaults_to_loopback_port_8645_and_metrics_to_off() -> None:
    config = parse_config('moniker = "bare"\n')
    assert config.rpc == RpcConfig(addr="127.0.0.1:8645", allow_remote=False)
    assert config.metrics_addr == ""


def test_rpc_and_metrics_addresses_parse() -> None:
    config = parse_config(
        '[rpc]\naddr = "[::1]:0"\nallow_remote = false\n[metrics]\naddr = "127.0.0.1:9100"\n'
    )
    assert (config.rpc.host, config.rpc.port) == ("::1", 0)
    assert config.metrics_addr == "127.0.0.1:9100"
    remote = parse_config('[rpc]\naddr = "0.0.0.0:8645"\nallow_remote = true\n')
    assert (remote.rpc.host, remote.rpc.allow_remote) == ("0.0.0.0", True)


# --- `dcent node run` flags ---------------------------------------------------------------------


def _run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    node_cmd.register(parser.add_subparsers())
    return parser.parse_args(["node", "run", *argv])


def test_flags_override_the_config() -> None:
    config = node_cmd.with_overrides(
        NodeConfig(), _run_args("--rpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:9100")
    )
    assert (config.rpc.host, config.rpc.port, config.rpc.allow_remote) == ("127.0.0.1", 0, False)
    assert config.metrics_addr == "127.0.0.1:9100"
    assert node_cmd.with_overrides(NodeConfig(), _run_args()) == NodeConfig()


def test_a_remote_rpc_address_needs_the_allow_flag() -> None:
    with pytest.raises(ConfigError) as refused:
        node_cmd.with_overrides(NodeConfig(), _run_args("--rpc-addr", "0.0.0.0:8645"))
    assert refused.value.message.startswith("--rpc-addr: 0.0.0.0 is not a loopback address")
    allowed = node_cmd.with_overrides(
        NodeConfig(), _run_args("--rpc-addr", "0.0.0.0:8645", "--rpc-allow-remote")
    )
    assert (allowed.rpc.host, allowed.rpc.allow_remote) == ("0.0.0.0", True)
    # The same check holds for an address that comes from config.toml.
    from_file = NodeConfig(rpc=RpcConfig(addr="192.0.2.7:8645"))
    with pytest.raises(ConfigError, match=r"^rpc\.addr: 192\.0\.2\.7 is not a loopback"):
        node_cmd.with_overrides(from_file, _run_args())


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--rpc-addr", "nonsense"), "--rpc-addr"),
        (("--metrics-addr", "0.0.0.0:9100", "--rpc-allow-remote"), "--metrics-addr"),
        (("--metrics-addr", "127.0.0.1"), "--metrics-addr"),
    ],
)
def test_bad_flags_are_named(argv: tuple[str, ...], flag: str) -> None:
    with pytest.raises(ConfigError) as refused:
        node_cmd.with_overrides(NodeConfig(), _run_args(*argv))
    assert refused.value.message.startswith(flag)


def test_node_run_refuses_a_remote_rpc_address_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = HomePaths(tmp_path)
    home.config.write_text('[rpc]\naddr = "0.0.0.0:8645"\n')
    args = _run_args("--home", str(home.root))
    assert args.func(args) == 1
    assert "error 5001: rpc.addr: 0.0.0.0 is not a loopback address" in capsys.readouterr().err


def test_sell_gpus_defaults_on_and_can_be_switched_off() -> None:
    assert parse_config("").market.sell_gpus is True
    assert parse_config("[market]\nsell_gpus = false\n").market.sell_gpus is False
    with pytest.raises(ConfigError, match=r"market\.sell_gpus"):
        parse_config('[market]\nsell_gpus = "no"\n')


def test_the_executor_table_reaches_the_sandbox_settings() -> None:
    config = parse_config(
        '[market]\nexecutor = "podman"\nself_test_interval_s = 60\n'
        '[executor]\ncontainer_image = "localhost/dcent-job:1"\nextra_ro_binds = ["/opt/cuda"]\n'
        'disk_backend = "tmpfs"\npodman_nproc = 4096\n'
    )
    settings = config.executor
    assert (settings.container_image, settings.extra_ro_binds) == ("localhost/dcent-job:1", ("/opt/cuda",))
    assert (settings.disk_backend, settings.podman_nproc, settings.cgroups) == ("tmpfs", 4096, True)
    assert config.market.self_test_interval_s == 60
    assert parse_config("").executor == NodeConfig().executor


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[executor]\ndisk_backend = "zfs"', "executor.disk_backend"),
        ('[executor]\nextra_ro_binds = "/opt"', "executor.extra_ro_binds"),
        ("[executor]\npodman_nofile = 3", "executor.podman_nofile"),
        ('[executor]\ncontainer_imge = "x"', "executor.container_imge"),
        ("[market]\nself_test_interval_s = 1", "market.self_test_interval_s"),
    ],
)
def test_bad_executor_settings_are_named(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(text)


def test_configs_node_toml_is_the_schemas_own_rendering() -> None:
    """One schema: the repository's copy is what `dcent init` writes, comments included."""
    assert TEMPLATE.read_text() == default_config_text(), (
        "configs/node.toml is stale; regenerate it with: .venv/bin/python -c "
        "\"from node.config import default_config_text as t; open('configs/node.toml', 'w').write(t())\""
    )


@pytest.mark.parametrize("table", TABLES)
def test_every_setting_is_documented_where_it_is_defined(table: str) -> None:
    settings = getattr(NodeConfig(), table)
    undocumented = sorted(
        item.name for item in fields(settings) if item.name not in field_docs(type(settings))
    )
    assert undocumented == []


def test_the_consensus_table_is_the_cores_own_config_with_the_nodes_defaults() -> None:
    consensus = parse_config(
        "[consensus]\ntimeout_propose_ms = 1500\nmax_buffered_per_validator = 8\n"
    ).consensus
    assert isinstance(consensus, ConsensusConfig)  # handed to the core as it is: no copy to drift
    assert (consensus.timeout_propose_ms, consensus.max_buffered_per_validator) == (1500, 8)
    assert consensus.timeout_commit_ms == 500 != ConsensusConfig().timeout_commit_ms


def test_a_rendered_config_reads_back_as_the_same_config() -> None:
    config = dataclasses.replace(
        NodeConfig(),
        moniker='quote " and \\ backslash',
        p2p=P2PConfig(bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/12D3KooW",)),
        executor=ExecutorSettings(probe_dir=Path("/var/tmp"), extra_ro_binds=("/opt/cuda",)),
    )
    assert parse_config(render_config(config)) == config


def test_a_provider_may_quote_in_an_asset() -> None:
    config = parse_config('[market]\nquote = "TUSD"\nquote_price_per_gpu_second = 2000\n')
    assert (config.market.quote, config.market.quote_price_per_gpu_second) == ("TUSD", 2_000)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ('quote = "tusd"\nquote_price_per_gpu_second = 5', r"market\.quote:"),
        ('quote = "TUSD"', r"market\.quote_price_per_gpu_second"),
        ("quote_price_per_gpu_second = 5", r"market\.quote_price_per_gpu_second"),
    ],
)
def test_a_quote_without_its_price_or_with_a_bad_symbol_is_refused(table: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config(f"[market]\n{table}\n")


def test_a_quote_in_an_asset_and_a_moving_dct_ask_are_not_both_set() -> None:
    with pytest.raises(ConfigError, match=r"market\.quote: .*pricing\.floor"):
        parse_config(
            '[market]\nquote = "TUSD"\nquote_price_per_gpu_second = 5\n[pricing]\nfloor = "0.0002 DCT"\n'
        )
