import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from pandanode.core.construct import slot_constructor
from pandanode.core.entry import Entry
from pandanode.core.operation import Operation
from pandanode.core.publish import NextArgs, OperationRef, PublishResult, PublishState

H = "0020" + "ab" * 32

SAMPLES: list[tuple[type[Any], tuple[Any, ...]]] = [
    (Entry, ("cd" * 32, 3, 4, H, H.replace("ab", "ef"), 12, H, "01" * 64, H, 0, b"\x00raw")),
    (Operation, (1, "update", "venue_" + H, (H,), {"name": "x"})),
    (NextArgs, (0, 2, H, None)),
    (PublishResult, (H, H, NextArgs(0, 2, H, None))),
    (OperationRef, (H, "venue_" + H)),
    (PublishState, (1, {1: H}, {H: OperationRef(H, "venue_" + H)}, False, 0)),
]


@pytest.mark.parametrize(("cls", "values"), SAMPLES, ids=[cls.__name__ for cls, _ in SAMPLES])
def test_a_slot_constructor_builds_what_the_dataclass_builds(
    cls: type[Any], values: tuple[Any, ...]
) -> None:
    built = slot_constructor(cls)(*values)
    expected = cls(*values)
    assert type(built) is cls
    assert built == expected and repr(built) == repr(expected)
    try:
        expected_hash = hash(expected)
    except TypeError:  # a dict among the fields: neither is hashable
        with pytest.raises(TypeError):
            hash(built)
    else:
        assert hash(built) == expected_hash
    for field in dataclasses.fields(cls):
        assert getattr(built, field.name) is getattr(expected, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, None)


def test_a_slot_constructor_takes_every_field_and_no_more() -> None:
    make = slot_constructor(NextArgs)
    with pytest.raises(TypeError):
        make(0, 2, H)
    with pytest.raises(TypeError):
        make(0, 2, H, None, None)


def test_only_slots_dataclasses_without_post_init_get_one() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a >= 0

    @dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    for cls in (NoSlots, Checked, Derived, int):
        with pytest.raises(TypeError):
            slot_constructor(cls)
