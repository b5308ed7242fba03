"""Griffe extension for the API reference: the blocking twins as the functions they are.

``backup = blocking(abackup, "...")`` (dbstash.bridge) makes a function with the async twin's
parameters at run time, but griffe reads source, so it would show a module attribute with no
signature. This extension replaces each such attribute with a function that has the async twin's
parameters and return type and the docstring passed to ``blocking``.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import griffe


class BlockingTwins(griffe.Extension):
    """Turn ``name = blocking(async_fn, doc)`` attributes into documented functions."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for module in _modules(pkg):
            for name, member in list(module.members.items()):
                twin = _twin(module, member)
                if twin is not None:
                    module.set_member(name, twin)


def _modules(module: griffe.Module) -> list[griffe.Module]:
    found = [module]
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            assert isinstance(member, griffe.Module)
            found += _modules(member)
    return found


def _twin(module: griffe.Module, member: Any) -> griffe.Function | None:
    if member.is_alias or not member.is_attribute:
        return None
    value = member.value
    if not isinstance(value, griffe.ExprCall) or str(value.function) != "blocking" or not value.arguments:
        return None
    target = module.members.get(str(value.arguments[0]))
    if not isinstance(target, griffe.Function):
        return None
    doc = (
        inspect.cleandoc(ast.literal_eval(str(value.arguments[1])))
        if len(value.arguments) > 1
        else f"The blocking twin of [`{target.name}`][dbstash.{target.name}]: the same parameters."
    )
    func = griffe.Function(
        member.name,
        lineno=member.lineno,
        endlineno=member.endlineno,
        parameters=target.parameters,
        returns=target.returns,
    )
    parser = target.docstring.parser if target.docstring else None
    func.docstring = griffe.Docstring(doc, lineno=member.lineno, parent=func, parser=parser)
    func.labels.discard("async")
    return func
