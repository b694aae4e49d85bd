"""The supervisor's history of control calls (pyovms/workers/supervisor.py), which a replacement worker applies:
only what still matters is kept, so a replacement does not load a model once per load a client ever sent."""

from __future__ import annotations

import pytest

from pyovms.workers.supervisor import _supersedes


def _load(name: str, **parameters) -> dict:
    return {"method": "load_model", "name": name, "parameters": parameters, "confined": True}


def _unload(name: str, **parameters) -> dict:
    return {"method": "unload_model", "name": name, "parameters": parameters}


def _register(name: str) -> dict:
    return {
        "method": "register_shared_memory",
        "name": name,
        "key": "/k",
        "offset": 0,
        "byte_size": 8,
        "parameters": {},
    }


def _unregister(name: str) -> dict:
    return {"method": "unregister_shared_memory", "name": name, "parameters": {}}


@pytest.mark.parametrize(
    ("new", "old", "superseded"),
    [
        (_load("a"), _load("a"), True),
        (_unload("a"), _load("a", config="{}"), True),
        (_load("a"), _unload("a"), True),
        (_load("a"), _load("b"), False),
        (_load("a"), _unload("a", unload_dependents=True), False),  # it also unloaded the pipelines running a
        (_unregister("r"), _register("r"), True),
        (_register("r"), _register("s"), False),
        (_unregister(""), _register("s"), True),  # every region
        (_register("r"), _load("r"), False),
    ],
)
def test_a_later_call_supersedes_an_earlier_one_on_the_same_model_or_region(new, old, superseded):
    assert _supersedes(new, old) is superseded
