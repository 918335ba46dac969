r"""Structure tokens of a JSON document: which key paths occur, with what types and array lengths.

Two configuration files of one schema share their key paths even when every value differs;
a value-only encoding sees them as unrelated. The structure of a document is the *set* of

* ``p:<pattern>``: every key path and every prefix of one, array positions wildcarded
  (``jobs.build.steps[*].uses``), so the set does not depend on key order, array order or
  how often a path repeats (presence, not counts);
* ``t:<pattern>=<type>`` (with ``arrays=True``): the JSON type found at a leaf path
  (``str``, ``num``, ``true``, ``false``, ``null``, ``{}``, ``[]``);
* ``n:<pattern>=<b>`` (with ``arrays=True``): the length class of each array,
  :math:`b = \lfloor \log_2 n \rfloor`, so ``[1, 2]`` and ``[1, 2, 3]`` share a class and
  ``[1]`` and a 500-element list do not.

:class:`tasks.mbat.encoder.JsonEncoder` codes these tokens as sparse hashed vectors (IDF
weighted after ``fit``) and binds their bag with one role :math:`R_\sigma` that no key path can
produce, so the structure term lives in its own role and path unbinding still reads values.
"""
from __future__ import annotations

from typing import Iterable

from graphcore.tasks.mbat.paths import Path, pattern

_TYPES = {"true": "true", "false": "false", "null": "null", "{}": "{}", "[]": "[]"}


def leaf_type(value: object, is_atom: bool) -> str:
    """Type name of a leaf value as listed by :func:`tasks.mbat.encoder.walk`."""
    if isinstance(value, float):
        return "num"
    return _TYPES[str(value)] if is_atom else "str"


def structure_tokens(leaves: Iterable[tuple[Path, str]], arrays: bool = True,
                     cache: dict[Path, str] | None = None) -> set[str]:
    """The structure token set of one document.

    Args:
        leaves: ``(path, type)`` of every leaf (see :func:`leaf_type`).
        arrays: add the type and array-length tokens, not only the paths.
        cache: optional ``path -> pattern`` memo shared across documents.
    """
    tokens: set[str] = set()
    lengths: dict[Path, int] = {}
    seen: set[Path] = set()
    memo = cache if cache is not None else {}
    for path, kind in leaves:
        for cut in range(len(path), 0, -1):
            prefix = path[:cut]
            if prefix in seen:
                break
            seen.add(prefix)
            pat = memo.get(prefix)
            if pat is None:
                pat = memo[prefix] = pattern(prefix)
            tokens.add("p:" + pat)
            last = prefix[-1]
            if arrays and isinstance(last, int):
                parent = prefix[:-1]
                lengths[parent] = max(lengths.get(parent, 0), last + 1)
        if arrays:
            tokens.add(f"t:{memo.get(path) or pattern(path)}={kind}")
    for parent, n in lengths.items():
        tokens.add(f"n:{memo.get(parent) or pattern(parent)}={n.bit_length() - 1}")
    return tokens
