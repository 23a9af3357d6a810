import pytest

from pandanode.core.lipmaa import is_skiplink_required, lipmaa

# n = 1..40 from the spec's table (§2.2)
SPEC_TABLE = [0, 1, 2, 1, 4, 5, 6, 4, 8, 9, 10, 8, 4, 13, 14, 15, 13, 17, 18, 19]
SPEC_TABLE += [17, 21, 22, 23, 21, 13, 26, 27, 28, 26, 30, 31, 32, 30, 34, 35, 36, 34, 26, 13]


def test_lipmaa_matches_the_spec_table_for_1_to_40() -> None:
    assert [lipmaa(n) for n in range(1, 41)] == SPEC_TABLE


@pytest.mark.parametrize(
    ("n", "expected"), [(121, 40), (122, 121), (364, 121), (1000, 996), (1093, 364), (3280, 1093)]
)
def test_lipmaa_matches_the_spec_samples(n: int, expected: int) -> None:
    assert lipmaa(n) == expected


def test_skiplink_is_required_exactly_at_the_spec_seq_nums_up_to_40() -> None:
    required = {n for n in range(1, 41) if is_skiplink_required(n)}
    assert required == {4, 8, 12, 13, 17, 21, 25, 26, 30, 34, 38, 39, 40}


def test_lipmaa_is_exact_for_huge_seq_nums() -> None:
    n = 2**64 - 1
    target = lipmaa(n)
    assert 0 < target < n


def test_lipmaa_always_points_backwards() -> None:
    assert all(0 <= lipmaa(n) < n for n in range(1, 5000))


def test_lipmaa_refuses_zero() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        lipmaa(0)
