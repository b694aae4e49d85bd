"""Dimensions and shape texts (`10`, `-1`, `1:8`)."""

from __future__ import annotations

import pytest

from pyovms.tensors.shapes import Dim, format_dims, parse_shape


@pytest.mark.parametrize(
    ("text", "dims"),
    [("(1,3,224,224)", "(1,3,224,224)"), ("[1, -1]", "(1,-1)"), ("(1:4,10)", "([1~4],10)"), ("()", "()")],
)
def test_parse_shape(text, dims):
    assert format_dims(parse_shape(text)) == dims


@pytest.mark.parametrize("text", ["1,3", "(1,a)", "(4:1)", "(-2)"])
def test_parse_shape_rejects(text):
    with pytest.raises(ValueError):
        parse_shape(text)


def test_dim_accepts():
    assert Dim.static(3).accepts(3) and not Dim.static(3).accepts(4)
    assert Dim.any().accepts(0) and Dim.any().accepts(10**9)
    assert Dim(2, 5).accepts(5) and not Dim(2, 5).accepts(1)
    assert Dim(2, 5).metadata_value == -1 and Dim.static(7).metadata_value == 7
