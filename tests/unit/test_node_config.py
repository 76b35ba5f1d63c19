"""config.toml parsing: the shipped template parses; each bad field is named."""

from __future__ import annotations

import pytest

from node.config import TEMPLATE, ConfigError, parse_config


def test_template_parses_with_safe_defaults() -> None:
    config = parse_config(TEMPLATE.read_text())
    assert (config.rpc.host, config.rpc.allow_remote) == ("127.0.0.1", False)
    assert config.market.executor == "bubblewrap" and not config.market.allow_unsandboxed
    assert config.market.price_per_gpu_second == 1_000_000  # "0.001 DCT"


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        ('addr = "127.0.0.1:26657"', 'addr = "localhost"', "rpc.addr"),
        ('executor = "bubblewrap"', 'executor = "chroot"', "market.executor"),
        ("timeout_commit_ms = 500", "timeout_commit_ms = -1", "consensus.timeout_commit_ms"),
        (
            'price_per_gpu_second = "0.001 DCT"',
            'price_per_gpu_second = "cheap"',
            "market.price_per_gpu_second",
        ),
        ("bootstrap = []", "bootstrap = 5", "p2p.bootstrap"),
        ('format = "text"', 'format = "xml"', "log.format"),
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
