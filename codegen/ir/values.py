r"""Values of the level-1 relational IR: SSA names with a domain, a row shape and a dtype.

A value's **domain** says which rows it has, and therefore its layout:

===========  ==========================================  =====================
domain       one row per                                  rows at run time
===========  ==========================================  =====================
``node``     node, in global order                        :math:`N`
``edge``     edge, in canonical ``(etype, dst)`` order    :math:`|E|`
``usrc``     distinct ``(etype, src)`` pair               :math:`|U_{src}|`
``udst``     distinct ``(etype, dst)`` pair               :math:`|U_{dst}|`
``ntype``    node type (per-type weights)                 :math:`T`
``etype``    relation (per-relation weights)              :math:`R`
``scalar``   nothing: the whole value is one row          1 (no row axis)
===========  ==========================================  =====================

Changing a value's domain *is* the layout decision: compact materialization moves a value
from ``edge`` to ``usrc``. Domains are linked by **index maps**: ``gather`` reads
``out[i] = x[index[i]]`` along one, ``aggregate`` reduces along it backwards.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Domain(str, enum.Enum):
    NODE = "node"
    EDGE = "edge"
    USRC = "usrc"
    UDST = "udst"
    NTYPE = "ntype"
    ETYPE = "etype"
    SCALAR = "scalar"

    def __str__(self) -> str:
        return self.value


ROW_DOMAINS = (Domain.NODE, Domain.EDGE, Domain.USRC, Domain.UDST)
TYPE_DOMAINS = (Domain.NTYPE, Domain.ETYPE)


@dataclass(frozen=True, slots=True)
class IndexMap:
    """An index vector of the graph layout: ``out[i] = x[index[i]]`` maps ``source`` to ``target``.

    ``injective``: no two target rows share a source row, so a store through the map writes each
    source row at most once (none of the graph's maps is: edges share nodes, pairs share types).

    ``ordered``: the index is non-decreasing over the target rows, a contract of every layout
    (:class:`~codegen.ir.layout.GraphLayout`): edges are sorted by (relation, destination),
    pairs by (relation, node), nodes by type. Rows grouped by such a map are already in group
    order, so a grouped traversal walks them directly and needs no member list (at ogbn-mag's
    size ``udst_inv``'s would be ``arange(E)``: 336 MB).
    """

    name: str
    source: Domain
    target: Domain
    injective: bool = False
    ordered: bool = False


INDEX_MAPS: dict[str, IndexMap] = {m.name: m for m in (
    IndexMap("src", Domain.NODE, Domain.EDGE),
    IndexMap("dst", Domain.NODE, Domain.EDGE),
    IndexMap("etype", Domain.ETYPE, Domain.EDGE, ordered=True),
    IndexMap("ntype", Domain.NTYPE, Domain.NODE, ordered=True),
    IndexMap("usrc_node", Domain.NODE, Domain.USRC),
    IndexMap("usrc_inv", Domain.USRC, Domain.EDGE),
    IndexMap("usrc_etype", Domain.ETYPE, Domain.USRC, ordered=True),
    IndexMap("udst_node", Domain.NODE, Domain.UDST),
    IndexMap("udst_inv", Domain.UDST, Domain.EDGE, ordered=True),
    IndexMap("udst_etype", Domain.ETYPE, Domain.UDST, ordered=True),
    IndexMap("rel_src_type", Domain.NTYPE, Domain.ETYPE),
    IndexMap("rel_dst_type", Domain.NTYPE, Domain.ETYPE),
)}

# The index name of a whole-domain reduction: every row maps to row 0 (a level-2 group_by and
# access-chain name beside the INDEX_MAPS).
ALL_ROWS = "*"

# The type domain whose weights a row domain's typed ops use, and its segment pointer.
ROW_TYPES: dict[Domain, tuple[Domain, str]] = {
    Domain.NODE: (Domain.NTYPE, "node_ptr"),
    Domain.EDGE: (Domain.ETYPE, "rel_ptr"),
    Domain.USRC: (Domain.ETYPE, "usrc_ptr"),
    Domain.UDST: (Domain.ETYPE, "udst_ptr"),
}

# Graph constants a program may read: name -> (domain, meaning).
GRAPH_CONSTANTS: dict[str, tuple[Domain, str]] = {
    "inv_in_degree": (Domain.NODE, "1 / max(1, in-degree) of each node"),
    "inv_udst_count": (Domain.UDST, "1 / number of edges of each (etype, dst) pair"),
}

DTYPES = ("float32", "float64")


@dataclass(frozen=True, slots=True)
class Value:
    """An SSA value: ``%id`` with a domain, a row shape and a dtype.

    ``shape`` is the shape of one row (``(H, F)``, ``(F,)``, ``(K, N)`` for a weight of a type
    domain) or, for ``scalar``, of the whole value.
    """

    id: int
    domain: Domain
    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str = ""

    @property
    def row_size(self) -> int:
        size = 1
        for s in self.shape:
            size *= s
        return size

    def __str__(self) -> str:
        return f"%{self.id}"

    def describe(self) -> str:
        dims = "x".join(str(s) for s in self.shape) or "1"
        label = f" '{self.name}'" if self.name else ""
        return f"%{self.id}: {self.domain}[{dims}] {self.dtype}{label}"
