"""Addresses are checked before anything connects."""

import pytest

pytest.importorskip("ray")

from regda_dist.distributed.cluster import ClusterError, connect, parse_address  # noqa: E402


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.2:6379", ("127.0.0.2", 6379)),
        ("ray://head.example:10001", ("head.example", 10001)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_parse_address_accepts_host_port(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    "address", ["", "head", "head:", "head:port", "http://head:8265x", "h:70000", "a b:1"]
)
def test_parse_address_rejects_malformed(address):
    with pytest.raises(ClusterError, match="HOST:PORT"):
        parse_address(address)


def test_connect_to_a_closed_port_fails_fast_with_the_address():
    with pytest.raises(ClusterError, match=r"127\.0\.0\.9:1"):
        connect("127.0.0.9:1", timeout_s=2)
