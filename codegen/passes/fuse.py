r"""Fusion: group ops into the regions that become kernels.

* **GEMM regions**: a ``typed_linear`` with its gather prologue (the row operand is read
  through the gathers' index chain, never materialised), its single-use elementwise epilogue
  (scaling by a per-row value, bias, activation) and, if the chain ends there, the
  ``aggregate`` that scatters its rows (so ``|E| x d`` messages are never written). A
  ``typed_outer`` (weight gradient) takes its gather prologue.
* **Traversal regions**: the remaining ops merge while one traversal schedule can run them:
  at most one reduction index (the group: incoming edges of a node, edges of a pair, all
  rows), every op on the member or the group domain, and values crossing between the two only
  through that index. Softmax, its scaling and the aggregation of an attention layer become one
  kernel over each destination's incoming edges.

Gathers of values computed elsewhere are *copied* into every region that reads them (they are
loads there); merges that would create a dependency cycle between regions are refused.

**Recomputation across regions** (DGL's fused ``u_mul_e_sum``, Hector's compact path): a
member-domain value that one traversal computes and another reduces along a different index
(the attention-weighted messages of RGAT's and HGT's backward, grouped by destination in one
kernel and by (source, relation) in the next) would be written as ``|E| x d`` rows. When it is
a chain of cheap row-wise ops over values that are narrower (the ``|E| x heads`` attention, a
node row, a compact row), the chain is copied into every consumer instead, and only those
narrow values cross between the kernels.
"""
from __future__ import annotations

import math

from ..errors import VerifyError
from ..ir.ops import ALL_ROWS, group_index, traits
from ..ir.program import Op, OpKind, Program
from ..ir.values import INDEX_MAPS, ROW_DOMAINS, Domain, Value
from . import dce
from .context import PassContext

NAME = "fuse"


def _row_gemm(op: Op) -> bool:
    """A GEMM over rows (its own kind of region), not one between whole weights."""
    t = traits(op)
    return t.gemm and not t.weight_space


class _Graph:
    """Producers, users and ancestor bitmasks of a program's ops."""

    def __init__(self, program: Program):
        self.program = program
        self.ops = list(program.ops)
        self.pos = {id(op): i for i, op in enumerate(self.ops)}
        self.producer = {v.id: op for op in self.ops for v in op.outputs}
        self.users: dict[int, list[Op]] = {}
        for op in self.ops:
            for v in op.inputs:
                self.users.setdefault(v.id, []).append(op)
        self.outputs = {v.id for v in program.outputs}
        self.anc: list[int] = []
        for op in self.ops:
            mask = 0
            for v in op.inputs:
                p = self.producer.get(v.id)
                if p is not None:
                    i = self.pos[id(p)]
                    mask |= self.anc[i] | (1 << i)
            self.anc.append(mask)

    def mask(self, ops) -> int:
        m = 0
        for op in ops:
            m |= 1 << self.pos[id(op)]
        return m

    def creates_cycle(self, members: list[Op]) -> bool:
        """True if some op outside ``members`` lies on a path between two members."""
        inside = self.mask(members)
        ancestors = 0
        for op in members:
            ancestors |= self.anc[self.pos[id(op)]]
        outside = ancestors & ~inside
        i = 0
        while outside:
            if outside & 1 and self.anc[i] & inside:
                return True
            outside >>= 1
            i += 1
        return False

    def merge_creates_cycle(self, members: list[Op], region_of: dict[int, int]) -> bool:
        """True if ``members`` as one region would depend on itself: through an outside op
        (:meth:`creates_cycle`), or through other regions, each of which runs as one kernel (a
        path can enter a region at one op and leave it at another; the fuzzer found two
        traversals merged from siblings that each fed the other through a GEMM)."""
        if self.creates_cycle(members):
            return True
        inside = {id(op) for op in members}

        def node(op: Op):
            if id(op) in inside:
                return "merged"
            r = region_of.get(id(op))
            return ("op", id(op)) if r is None else ("region", r)

        successors: dict = {}
        for op in self.ops:
            a = node(op)
            for v in op.outputs:
                for user in self.users.get(v.id, []):
                    b = node(user)
                    if a != b:
                        successors.setdefault(a, set()).add(b)
        stack, seen = list(successors.get("merged", ())), set()
        while stack:
            n = stack.pop()
            if n == "merged":
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(successors.get(n, ()))
        return False

    def is_load(self, op: Op, gemm_ops: set[int]) -> bool:
        """A gather (chain) of a buffer: an input, a parameter, a constant or a GEMM result.

        Loads are not fused on their own; every region that reads one copies the chain.
        """
        while op.kind == OpKind.GATHER:
            p = self.producer.get(op.inputs[0].id)
            if p is None or traits(p).standalone or id(p) in gemm_ops:
                return True
            op = p
        return False


def _schedulable(ops: list[Op], g: _Graph) -> bool:
    """Can one traversal kernel run ``ops`` (see module doc)?"""
    ids = {id(op) for op in ops}
    indices = {i for i in (group_index(op) for op in ops) if i is not None}
    if len(indices) > 1:
        return False
    if indices:
        index = indices.pop()
        if index == ALL_ROWS:  # sums over all rows: of one domain, the kernel's rows
            members = {op.inputs[0].domain for op in ops if group_index(op) == ALL_ROWS}
            if len(members) > 1:
                return False
            member, group = members.pop(), Domain.SCALAR
        else:
            member, group = INDEX_MAPS[index].target, INDEX_MAPS[index].source
        allowed = {member, group, Domain.SCALAR}
    else:
        index = None
        allowed = {next((op.out.domain for op in ops if op.out.domain != Domain.SCALAR), Domain.SCALAR),
                   Domain.SCALAR}
    for op in ops:
        if op.out.domain not in allowed:
            return False
        for v in op.inputs:
            p = g.producer.get(v.id)
            if p is None or id(p) not in ids or v.domain == op.out.domain or v.domain == Domain.SCALAR:
                continue
            if op.kind == OpKind.GATHER and op.attr("index") == index:
                continue  # a member reads its group's value
            if group_index(op) == index and index is not None:
                continue  # members reduced into their group
            return False
    return True


def _gemm_region(op: Op, g: _Graph, taken: set[int]) -> list[Op]:
    region = [op]
    if op.out.domain not in ROW_DOMAINS:  # a weight gradient takes its prologue only
        return region
    v = op.out
    while v.id not in g.outputs:
        users = g.users.get(v.id, [])
        if len(users) != 1 or id(users[0]) in taken:
            break
        u = users[0]
        if traits(u).epilogue and u.out.domain == op.out.domain and not g.creates_cycle(region + [u]):
            region.append(u)
            v = u.out
            continue
        if u.kind == OpKind.AGGREGATE and u.attr("reduce") == "sum" and v.domain == op.out.domain:
            region.append(u)
        break
    return region


def _with_loads(region: list[Op], g: _Graph) -> list[Op]:
    """Region ops in program order, each preceded by copies of the gather chains it loads."""
    ids = {id(op) for op in region}
    ordered: list[Op] = []
    copied: set[int] = set()

    def copy_chain(v: Value) -> None:
        p = g.producer.get(v.id)
        if p is None or id(p) in ids or p.kind != OpKind.GATHER or id(p) in copied:
            return
        copy_chain(p.inputs[0])
        copied.add(id(p))
        ordered.append(p)

    for op in sorted(region, key=lambda o: g.pos[id(o)]):
        for v in op.inputs:
            copy_chain(v)
        ordered.append(op)
    return ordered


def run(program: Program, ctx: PassContext) -> Program:
    g = _Graph(program)
    region_of: dict[int, int] = {}
    regions: list[list[Op]] = []
    kinds: list[str] = []

    def new_region(ops: list[Op], kind: str) -> None:
        for op in ops:
            region_of[id(op)] = len(regions)
        regions.append(ops)
        kinds.append(kind)

    taken: set[int] = set()
    for op in g.ops:
        if _row_gemm(op):
            region = _gemm_region(op, g, taken)
            taken.update(id(o) for o in region)
            new_region(region, "gemm")
    gemm_ops = set(taken)

    for op in g.ops:
        if id(op) in taken or traits(op).standalone or _row_gemm(op):
            continue
        if g.is_load(op, gemm_ops):
            continue  # copied into the regions that read it
        mine = [op]
        for v in op.inputs:
            p = g.producer.get(v.id)
            if p is None or id(p) not in region_of or kinds[region_of[id(p)]] != "traversal":
                continue
            r = region_of[id(p)]
            if any(region_of.get(id(o)) == r for o in mine):
                continue
            merged = regions[r] + mine
            if _schedulable(merged, g) and not g.merge_creates_cycle(merged, region_of):
                for o in mine:
                    region_of.pop(id(o), None)
                regions[r] = merged
                for o in merged:
                    region_of[id(o)] = r
                mine = merged
        if id(op) not in region_of:
            new_region(mine, "traversal")
        taken.update(id(o) for o in mine)

    _merge_siblings(regions, kinds, region_of, g)
    recomputed = _recompute_wide_values(regions, kinds, region_of, g)
    if recomputed.count:
        ctx.note(NAME, f"{recomputed.count} member values recomputed in their consumers instead of stored")
    fused: dict[int, Op] = {}
    count = 0
    for r, members in enumerate(regions):
        if not members or any(region_of.get(id(o)) != r for o in members):
            continue  # merged away
        copies = recomputed.copies.get(r, [])
        full = _with_loads(members + copies, g)
        inside = {v.id for o in full for v in o.outputs}
        external = []
        for o in full:
            for v in o.inputs:
                if v.id not in inside and v not in external:
                    external.append(v)
        member_ids = {id(o) for o in members}

        def read_outside(v: Value) -> bool:
            return any(id(u) not in member_ids and v.id not in recomputed.values.get(region_of.get(id(u)), ())
                       for u in g.users.get(v.id, []))

        escaping = [v for o in members for v in o.outputs
                    if v.id in g.outputs or v.id in recomputed.exported or read_outside(v)]
        if len(full) == 1:
            continue
        count += 1
        last = max(members, key=lambda o: g.pos[id(o)])
        fused[id(last)] = Op(OpKind.FUSED, tuple(external), tuple(escaping),
                             (("kind", kinds[r]), ("region", tuple(full))), last.loc)
        for o in members:
            if o is not last:
                fused[id(o)] = None
    if not count:
        return program
    ops = []
    for op in g.ops:
        if id(op) in fused:
            if fused[id(op)] is not None:
                ops.append(fused[id(op)])
        else:
            ops.append(op)
    ops = _topological(ops, program)
    ctx.note(NAME, f"{count} fused kernels from {len(program.ops)} ops")
    return dce.run(Program(program.inputs, program.params, tuple(ops), program.outputs), ctx)


def _schedule(ops: list[Op]) -> tuple:
    indices = {i for i in (group_index(op) for op in ops) if i is not None}
    domains = {op.out.domain for op in ops if op.out.domain != Domain.SCALAR}
    return (tuple(sorted(indices)), () if indices else tuple(sorted(map(str, domains))))


def _merge_siblings(regions: list[list[Op]], kinds: list[str], region_of: dict[int, int], g: _Graph) -> None:
    """Horizontal fusion: independent traversal regions with the same schedule (two reductions
    over the same incoming edges, say) become one kernel, so the members are read once."""
    live = [r for r, members in enumerate(regions)
            if kinds[r] == "traversal" and members and all(region_of.get(id(o)) == r for o in members)]
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                union = regions[a] + regions[b]
                if _schedule(regions[a]) != _schedule(regions[b]) or not _schedulable(union, g) or \
                        g.merge_creates_cycle(union, region_of):
                    continue
                regions[a] = union
                regions[b] = []
                for o in union:
                    region_of[id(o)] = a
                live.remove(b)
                merged = True
                break
            if merged:
                break


def _width(v: Value) -> int:
    return math.prod(v.shape)


class _Recomputed:
    """What :func:`_recompute_wide_values` decided.

    Attributes:
        copies: region -> ops of other regions it recomputes (in program order).
        values: region -> ids of the values those copies define there.
        exported: ids of the narrow values a region now lets escape for its consumers' copies.
        count: values no longer stored.
    """

    def __init__(self) -> None:
        self.copies: dict[int, list[Op]] = {}
        self.values: dict[int, set[int]] = {}
        self.exported: set[int] = set()
        self.count = 0


def _member_domain(ops: list[Op]) -> Domain | None:
    """The member domain of a grouped traversal region (None: not grouped, or all rows)."""
    index = next((i for i in map(group_index, ops) if i is not None and i != ALL_ROWS), None)
    return INDEX_MAPS[index].target if index is not None else None


def _chain(v: Value, r: int, region_of: dict[int, int], g: _Graph,
           dropped: set[int]) -> tuple[list[Op], list[Value]] | None:
    """The ops of region ``r`` that recompute ``v`` (producers first) and the values of ``r`` the
    copy reads, or None when ``v`` is not a chain of cheap row-wise ops, none wider than ``v``,
    over narrower values."""
    ops: list[Op] = []
    reads: list[Value] = []

    def visit(u: Value, top: bool) -> bool:
        p = g.producer.get(u.id)
        if p is None or region_of.get(id(p)) != r:
            return u.id not in dropped  # read from elsewhere: it must still be stored
        if any(o is p for o in ops):
            return True
        if p.kind != OpKind.GATHER and not top and (u.domain != v.domain or _width(u) < _width(v)):
            if not any(w.id == u.id for w in reads):
                reads.append(u)  # a group value or a narrow member value: the copy reads it
            return True
        t = traits(p)
        if not t.recompute or t.standalone or group_index(p) is not None:
            return False
        if not all(visit(w, False) for w in p.inputs):
            return False
        ops.append(p)
        return True

    if not visit(v, True):
        return None
    if sum(_width(u) for u in reads if u.domain == v.domain) >= _width(v):
        return None  # storing the reads would cost as much as storing v
    if any(_width(o.out) > _width(v) for o in ops):
        return None  # the copy would recompute wider rows than it saves (a dot product, say)
    return ops, reads


def _recompute_wide_values(regions: list[list[Op]], kinds: list[str], region_of: dict[int, int],
                           g: _Graph) -> _Recomputed:
    """Copy the chains of wide member values into the traversals that read them (module doc)."""
    out = _Recomputed()
    dropped: set[int] = set()  # values no longer stored
    pinned: set[int] = set()  # values a copy reads: they must stay stored
    for op in g.ops:
        r = region_of.get(id(op))
        v = op.out
        if r is None or kinds[r] != "traversal" or len(op.outputs) != 1 or v.id in g.outputs or v.id in pinned:
            continue
        if v.domain != _member_domain(regions[r]):
            continue  # only a grouped traversal's member rows are wide (|E| of them)
        consumers = {region_of.get(id(u)) for u in g.users.get(v.id, []) if region_of.get(id(u)) != r}
        if not consumers or None in consumers or any(kinds[c] != "traversal" for c in consumers):
            continue
        found = _chain(v, r, region_of, g, dropped)
        if found is None:
            continue
        ops, reads = found
        plans = {c: out.copies.get(c, []) + [o for o in ops if not any(o is q for q in out.copies.get(c, []))]
                 for c in consumers}
        if not all(_schedulable(regions[c] + plan, g) for c, plan in plans.items()):
            continue
        for c, plan in plans.items():
            out.copies[c] = sorted(plan, key=lambda o: g.pos[id(o)])
            out.values.setdefault(c, set()).update(o.out.id for o in ops)
        out.exported.update(u.id for u in reads)
        pinned.update(u.id for u in reads)
        dropped.add(v.id)
        out.count += 1
    return out


def _topological(ops: list[Op], program: Program) -> list[Op]:
    """Order ops so each follows the producers of its inputs (stable otherwise)."""
    available = {v.id for v in (*program.inputs, *program.params)}
    pending = list(ops)
    ordered: list[Op] = []
    while pending:
        for i, op in enumerate(pending):
            if all(v.id in available for v in op.inputs):
                ordered.append(op)
                available.update(v.id for v in op.outputs)
                del pending[i]
                break
        else:
            raise VerifyError("regions depend on each other in a cycle", pass_name=NAME)
    return ordered
