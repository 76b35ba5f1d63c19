"""docs/rpc.md is the node's method schema rendered: it cannot go stale unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.rpc import reference
from node.rpc.methods import render_reference
from node.rpc.node_table import NODE_SCHEMA
from tests.rpc_contract import CONTRACT_METHODS

DOC = Path(__file__).resolve().parents[2] / "docs" / "rpc.md"
REGENERATE = "python -m node.rpc.reference > docs/rpc.md"


def test_docs_rpc_md_is_the_rendered_node_table() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(NODE_SCHEMA), (
        f"docs/rpc.md is stale; regenerate it: {REGENERATE}"
    )


def test_the_reference_entry_point_renders_the_node_table_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert reference.main([]) == 0
    assert capsys.readouterr().out == DOC.read_text(encoding="utf-8")


def test_the_node_table_holds_the_contract_methods() -> None:
    assert {spec.name for spec in NODE_SCHEMA} >= CONTRACT_METHODS
