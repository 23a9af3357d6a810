"""The listing engine: filtered, ordered and paginated lists of one schema's documents.

A :class:`SchemaIndex` holds the current views of one schema's documents in memory and answers
``ListDocuments``; a :class:`Catalog` keeps one index per schema. Everything here is pure Python,
synchronous and not thread-safe: the query service calls it from its event loop only.

Semantics (what the tests pin down):

* **Filters** are spec §7.4's operators, combined with AND; :func:`compile_filter` lists which
  operators each field type takes. A predicate on a field never matches a document that has no
  value for it (a deleted document has no fields), whatever the operator, like SQL's NULL.
  Deleted documents are left out unless a predicate on :attr:`Meta.DELETED` is given.
* **Strings** compare by code point (the same as UTF-8 byte order) and ``contains`` is a
  case-sensitive substring test; relations compare by document id, pinned relations by their
  ``_``-joined view id; ``relation_list`` ``in`` matches a list holding any of the values and
  ``not_in`` one holding none of them (an empty list included).
* **Floats** follow one total order, for filters and ordering alike (PostgreSQL's):
  ``-inf < … < -0.0 == 0.0 < … < inf < NaN``; NaN equals NaN. An int operand on a float field
  compares by exact value.
* **Order** is by ``(key, document id)``, ascending or descending; descending is the exact
  reverse, tie-break included, so every order is a strict total order. Documents without a value
  for the key (deleted ones, when asked for) come after every value ascending and first
  descending. ``False < True``; bytes compare byte-wise.
* **Pages** are keyset pages. A page token records the query's fingerprint (schema id,
  predicates as a set, order) and the sort key of the page's last document; the next page holds
  the documents strictly after that key in the order, as the index is *then*. So a document that
  matches and keeps its sort key from the first request to the last is returned exactly once,
  however many documents are added, changed or removed meanwhile; documents added behind the
  position are not returned, and a document whose sort key changes between two requests may be
  returned twice or not at all (and, when that document's sort key is longer than about 1.5 KB,
  documents sharing its first 256 characters or bytes may be returned again).
  ``total_size`` counts the matches at the time of each call.
* **Page tokens** are opaque: authenticated with the node's secret (HMAC-SHA256), at most
  :data:`MAX_PAGE_TOKEN_LENGTH` characters, checked before anything in them is parsed. A token
  that is too long, altered, made by another node, or used with another query is rejected with
  the reason ``INVALID_PAGE_TOKEN``. Signed with the node's kept secret (see
  :mod:`pandanode.services.query.token_secret`), they stay valid across restarts.
* **Page size**: None or 0 means :data:`DEFAULT_PAGE_SIZE`; a larger size than the index's
  maximum (:data:`MAX_PAGE_SIZE` by default) is lowered to it, as Google's AIP-158 prescribes;
  a negative size is an error.

The modules: :mod:`.targets` (what a predicate or an order reads from a document),
:mod:`.filters` (predicates validated and compiled), :mod:`.sorted_entries` (the sorted
structure of one order key), :mod:`.tokens` (authenticated page tokens), :mod:`.changelog`
(recent changes, for cached counts), :mod:`.index` (one schema's index, which plans and answers
a page) and :mod:`.catalog` (one index per schema).
"""

from __future__ import annotations

from .catalog import Catalog
from .changelog import DEFAULT_CHANGE_LOG_BYTES
from .filters import DocumentFilter, compile_filter
from .index import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, SchemaIndex
from .tokens import MAX_PAGE_TOKEN_LENGTH

__all__ = [
    "DEFAULT_CHANGE_LOG_BYTES",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MAX_PAGE_TOKEN_LENGTH",
    "Catalog",
    "DocumentFilter",
    "Page",
    "SchemaIndex",
    "compile_filter",
]
