"""The method registry (``hyperadapt.registry``): what it says about a method agrees with the method itself."""

from __future__ import annotations

import typing

import pytest

from hyperadapt.registry import method_entry, method_names


@pytest.mark.parametrize("name", [n for n in method_names(loadable=True) if method_entry(n).serves_as])
def test_a_loaded_method_serves_as_its_registry_entry_says(name):
    # the server reads the loaded method's ``serves_as`` (hyperadapt.core.rows.Servable), the CLI and benchmarks
    # read the entry's without loading anything; the load function's return type names the class that is loaded
    entry = method_entry(name)
    loaded = typing.get_type_hints(entry.load)["return"]
    assert loaded.serves_as == entry.serves_as
