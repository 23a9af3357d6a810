"""Quick positional constructors for the frozen dataclasses built once per ingested entry.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
about three times as much as setting the slot itself. :func:`slot_constructor` makes a function
that builds the same object by setting the slots directly: for the types the publish path builds
for every entry (entries, operations, the publish state and results) that is a few microseconds
of the event loop per entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["slot_constructor"]

T = TypeVar("T")


def slot_constructor(cls: type[T]) -> Callable[..., T]:
    """A function ``make(*values)`` equal to ``cls(*values)`` with every field given, in order.

    Only for a frozen dataclass with slots, whose fields are all set by ``__init__`` and which
    has no ``__post_init__`` (nothing but the assignments is skipped, so there is nothing to
    miss). No value is converted or checked, as the dataclass's own ``__init__`` does not either.

    Raises:
        TypeError: ``cls`` is not such a dataclass.
    """
    if (
        not dataclasses.is_dataclass(cls)
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
    ):
        raise TypeError(f"{cls.__name__} is not a slots dataclass without __post_init__")
    fields = dataclasses.fields(cls)
    if any(not field.init for field in fields):
        raise TypeError(f"{cls.__name__} has a field its __init__ does not set")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    values = [f"v{index}" for index in range(len(fields))]
    setters = [f"_set{index}" for index in range(len(fields))]
    for setter, field in zip(setters, fields, strict=True):
        namespace[setter] = getattr(cls, field.name).__set__
    # Bound as defaults: local lookups, not global ones.
    defaults = ", ".join(f"{name}={name}" for name in ("_new", "_cls", *setters))
    body = "".join(
        f"    {setter}(o, {value})\n" for setter, value in zip(setters, values, strict=True)
    )
    head = f"def make({', '.join(values)}, *, {defaults}):\n    o = _new(_cls)\n"
    exec(head + body + "    return o\n", namespace)  # only names made above from the fields
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__}"
    make.__doc__ = f"``{cls.__name__}(...)`` with every field given, positionally."
    return make
