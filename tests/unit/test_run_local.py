"""The local runner's pure parts: ports for every version, points for the comparison."""

from __future__ import annotations

import pytest

from iris_tools.local import commands as run_local, comparison as compare


def test_named_ports_keep_their_order_and_a_new_version_gets_the_next_free_one() -> None:
    ports = run_local.assign_ports(["lin_svc", "rbf_svc", "svc"], "svc=5001 lin_svc=5002")
    assert list(ports.items()) == [("svc", 5001), ("lin_svc", 5002), ("rbf_svc", 5003)]


def test_ports_named_for_versions_that_do_not_exist_are_ignored() -> None:
    assert run_local.assign_ports(["a", "b"], "a=6000,gone=6001") == {"a": 6000, "b": 6001}


@pytest.mark.parametrize("spec", ["svc", "svc=", "svc=abc", "svc=70000", "svc=0"])
def test_a_malformed_ports_spec_is_refused_with_an_example(spec: str) -> None:
    with pytest.raises(run_local.RunError, match="is not NAME=PORT"):
        run_local.parse_ports(spec)


@pytest.mark.parametrize("tokens, points", [
    ([], [(5.8, 3.4)]),
    (["6.1,2.8"], [(6.1, 2.8)]),
    (["5.8,3.4", "7,3"], [(5.8, 3.4), (7.0, 3.0)]),
    (["6.1", "2.8"], [(6.1, 2.8)]),
])
def test_points_come_comma_joined_or_as_a_plain_pair(tokens: list[str], points: list[tuple[float, ...]]) -> None:
    assert compare.parse_points(tokens) == points


def test_a_point_that_is_not_numbers_is_refused() -> None:
    with pytest.raises(compare.RunError, match="POINT"):
        compare.parse_points(["5.8,abc"])
