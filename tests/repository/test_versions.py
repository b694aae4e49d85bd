"""Version policies (all, latest, specific) and version strings."""

from __future__ import annotations

import pytest

from pyovms.errors import ServingError, Status
from pyovms.repository.registry import parse_version
from pyovms.repository.version_policy import VersionPolicy


@pytest.mark.parametrize(
    ("policy", "selected"),
    [
        (None, [5]),
        ({"all": {}}, [1, 2, 5]),
        ({"latest": {"num_versions": 2}}, [2, 5]),
        ({"specific": {"versions": [1, 3]}}, [1]),
    ],
)
def test_version_policy_select(policy, selected):
    assert VersionPolicy.parse(policy).select([5, 1, 2]) == selected


@pytest.mark.parametrize(
    "policy", [{"latest": {"num_versions": 0}}, {"all": {}, "latest": {}}, {"specific": {}}, {"newest": {}}]
)
def test_version_policy_rejects(policy):
    with pytest.raises(ValueError):
        VersionPolicy.parse(policy)


@pytest.mark.parametrize(
    ("text", "value"),
    [("", 0), ("0", 0), ("7", 7), ("-3", -3), ("-9223372036854775808", -(2**63)), ("9223372036854775807", 2**63 - 1)],
)
def test_parse_version(text, value):
    assert parse_version(text) == value


@pytest.mark.parametrize("text", ["01", "abc", "1.0", " 1", "-0", "9223372036854775808", "-9223372036854775809"])
def test_parse_version_rejects(text):
    with pytest.raises(ServingError) as info:
        parse_version(text)
    assert info.value.status is Status.MODEL_VERSION_INVALID_FORMAT
