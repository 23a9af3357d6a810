"""The lipmaa function: which earlier entry a Bamboo skiplink points to (spec §2.2)."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["is_skiplink_required", "lipmaa"]


# Cached: publishing asks for the same small seq nums over and over (decoding, the log's state,
# the next arguments), and a cache hit costs a fraction of the loop below.
@lru_cache(maxsize=4096)
def lipmaa(n: int) -> int:
    """Return the seq num the skiplink of entry ``n`` (n ≥ 1) points to; 0 for n = 1.

    Integer-only port of lipmaa-link 0.2.2; a floating-point log3 gives wrong answers.
    """
    if n < 1:
        raise ValueError(f"lipmaa is defined for n >= 1, not {n}")
    m, po3, u = 1, 3, n
    while m < n:
        po3 *= 3
        m = (po3 - 1) // 2
    po3 //= 3
    if m != n:
        while u != 0:
            m = (po3 - 1) // 2
            po3 //= 3
            u %= m
        if m != po3:
            po3 = m
    return n - po3


@lru_cache(maxsize=4096)
def is_skiplink_required(seq_num: int) -> bool:
    """Whether an entry at ``seq_num`` carries a skiplink (it differs from its backlink target)."""
    return seq_num > 1 and lipmaa(seq_num) != seq_num - 1
