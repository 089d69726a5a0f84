"""A griffe extension for the API reference (`make docs`): a dataclass field documented only by
``field(metadata={"help": ...})``, the way our configs document their keys, gets that help as its docstring."""

from __future__ import annotations

import ast
from typing import Any

import griffe


class FieldHelp(griffe.Extension):
    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        value = getattr(node, "value", None)
        if attr.docstring or not (isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field"):
            return
        for keyword in value.keywords:
            if keyword.arg == "metadata" and isinstance(keyword.value, ast.Dict):
                for key, text in zip(keyword.value.keys, keyword.value.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "help" and isinstance(text, ast.Constant):
                        attr.docstring = griffe.Docstring(str(text.value), parent=attr)
