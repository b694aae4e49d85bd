"""config.json: loading, relative base paths, schema errors with OVMS's messages."""

from __future__ import annotations

import json

import pytest

from pyovms.errors import ServingError, Status
from pyovms.repository.config import load_config


def _write_config(tmp_path, document):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return path


def test_config_resolves_relative_base_path(tmp_path):
    path = _write_config(tmp_path, {"model_config_list": [{"config": {"name": "m", "base_path": "models/m"}}]})
    config = load_config(path)
    assert config.models[0].base_path == str((tmp_path / "models" / "m").resolve())


@pytest.mark.parametrize(
    ("document", "keyword"),
    [
        ({}, "required"),
        ({"model_config_list": [], "unknown": 1}, "additionalProperties"),
        ({"model_config_list": [{"config": {"name": "m", "bogus": 1}}]}, "additionalProperties"),
        ({"model_config_list": [{"config": {"base_path": "x"}}]}, "required"),
        ({"model_config_list": [{"config": {"name": "m", "nireq": -1}}]}, "minimum"),
    ],
)
def test_config_schema_errors(tmp_path, document, keyword):
    with pytest.raises(ServingError) as info:
        load_config(_write_config(tmp_path, document))
    assert info.value.status is Status.JSON_INVALID
    assert "JSON schema parse error:#/" in info.value.message and f"Keyword:{keyword}" in info.value.message


def test_config_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ServingError) as info:
        load_config(bad)
    assert info.value.status is Status.JSON_INVALID
    with pytest.raises(ServingError) as info:
        load_config(tmp_path / "missing.json")
    assert info.value.status is Status.FILE_INVALID
