"""The suite's xdist work units (tests/scheduling.py): what must share a worker does."""

from __future__ import annotations

from tests.scheduling import SHARED_HOST_STATE, work_unit


def test_modules_sharing_host_state_form_one_unit() -> None:
    units = {work_unit(f"{module}::test_x") for module in SHARED_HOST_STATE}
    assert units == {"group:netns", "group:podman"}
    assert work_unit("tests/e2e/test_netns.py::a") == work_unit("tests/e2e/test_netns_latency.py::b")


def test_a_module_with_a_module_scoped_fixture_is_one_unit() -> None:
    module = "tests/integration/test_hostile_peers_process.py"  # one node process for the module
    assert work_unit(f"{module}::test_a[x]") == work_unit(f"{module}::test_b") == module
    # e2e modules share the conftest's module-scoped network
    assert work_unit("tests/e2e/test_ledger.py::test_a") == "tests/e2e/test_ledger.py"


def test_any_other_test_is_a_unit_of_its_own() -> None:
    nodeid = "tests/unit/test_encoding.py::test_non_canonical_forms_are_rejected[bytes key]"
    assert work_unit(nodeid) == nodeid
