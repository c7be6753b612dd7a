"""Reading and writing request and response headers in one pass, on the per-request path.

An ``httpx.Headers`` lookup (httpx2's too) scans every header and re-encodes the name each time, and ``get`` of
an absent name raises and catches ``KeyError``: about 2 µs per lookup among an openai request's 17 headers, and
a traced call made three lookups and one write — some 15% of what tracing a call cost. Both libraries keep their
headers as a list of ``(name, lower-case name, value)`` byte triples; where that list is there, it is read in one
pass and a header known to be absent is appended to it. Any other mapping goes through its mapping interface.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

Triples = list[tuple[bytes, bytes, bytes]]


def _triples(headers: Any) -> Triples | None:
    """httpx's own header list, if ``headers`` keeps one as httpx 0.18 and later (and httpx2) do."""
    found = getattr(headers, "_list", None)
    if type(found) is not list or (found and (type(found[0]) is not tuple or len(found[0]) != 3)):
        return None
    return found


def values(headers: Mapping[str, str], names: tuple[bytes, ...]) -> list[str | None]:
    """The value of each header in ``names`` (lower-case), None where absent; repeated headers joined with
    ``", "`` as httpx joins them."""
    triples = _triples(headers)
    if triples is None:
        return [headers.get(name.decode("latin-1")) for name in names]
    found: list[str | None] = [None] * len(names)
    for _, key, value in triples:
        if key in names:
            at = names.index(key)
            text = value.decode("latin-1")  # never fails; what the headers hold here is ASCII
            found[at] = text if found[at] is None else f"{found[at]}, {text}"
    return found


def add(headers: MutableMapping[str, str], carrier: Mapping[str, str], absent: bool) -> None:
    """Set each of ``carrier``'s headers on ``headers``; ``absent``: none of them is there yet (as
    :func:`values` found), so they are appended without looking for one to replace."""
    triples = _triples(headers) if absent else None
    for name, value in carrier.items():
        if triples is None:
            headers[name] = value
        else:
            key = name.encode("ascii")
            triples.append((key, key.lower(), value.encode("utf-8")))  # as httpx encodes a value it is given
