r"""Linear operator reordering, chosen by the cost model.

Two identities, each applied only where :func:`~codegen.passes.search.lookahead` says the
program gets cheaper (FLOPs first, then bytes) on this graph:

* **Chain folding** (RGAT): :math:`(h W_1) W_2 = h (W_1 W_2)` for two typed linears over the
  same rows. RGAT's score :math:`(h_v W_r) a_r` becomes :math:`h_v (W_r a_r)`: a ``[d_in, H]``
  matrix per relation replaces a ``d_in x HF`` GEMM per edge when :math:`h_v W_r` has no other use.
* **Dot transposition** (HGT): :math:`(a W) \cdot b = a \cdot (b W^\top)`. HGT's score
  :math:`(k_u W^{att}_r) \cdot q_v` can apply the relation matrix on the source side (once per
  distinct ``(src, r)`` after compaction) or on the destination side (once per ``(dst, r)``):
  the cost model picks the side with fewer distinct pairs.

Hand-computed cases the tests check (``tests/codegen/passes/test_reorder.py``): RGAT's
destination side always folds (the ``E x d_in x HF`` GEMM disappears); its source side does
not fold when :math:`h_u W_r` is still needed for the messages and :math:`d_{in} > HF`; HGT moves
:math:`W^{att}` to the side with fewer distinct pairs.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..ir.program import Builder, OpKind, Program, splice
from ..ir.values import Domain, Value
from .context import PassContext
from .search import improve

NAME = "reorder"


def _letters(w: Value, base: str) -> str:
    return ("t" if w.domain != Domain.SCALAR else "") + base


def _fold_chain(program: Program, index: int) -> Program | None:
    """``typed_linear(typed_linear(x, W1), W2)`` -> ``typed_linear(x, W1 @ W2)``."""
    outer = program.ops[index]
    if outer.kind != OpKind.TYPED_LINEAR or outer.attr("per_head"):
        return None
    inner = program.producers().get(outer.inputs[0].id)
    if inner is None or inner.kind != OpKind.TYPED_LINEAR or inner.attr("per_head"):
        return None
    x, w1 = inner.inputs
    w2 = outer.inputs[1]
    if Domain.SCALAR not in (w1.domain, w2.domain) and w1.domain != w2.domain:
        return None
    if w1.domain == Domain.SCALAR and w2.domain != Domain.SCALAR:
        # W1 @ W2[t] broadcasts W1 over the types, and W1's gradient sums a GEMM per type: neither
        # is one strided batched GEMM (the fuzzer's 'km,tmn->tkn'), so the chain stays unfolded
        return None
    a = _letters(w1, "mk" if inner.attr("transpose_w") else "km")
    b = _letters(w2, "nm" if outer.attr("transpose_w") else "mn")
    typed = w1.domain if w1.domain != Domain.SCALAR else w2.domain
    out = ("t" if typed != Domain.SCALAR else "") + "kn"
    builder = Builder.after(program)
    builder.loc = outer.loc
    folded = builder.emit(OpKind.WEIGHT_MATMUL, (w1, w2), equation=f"{a},{b}->{out}", domain=str(typed))
    result = builder.emit(OpKind.TYPED_LINEAR, (x, folded))
    return splice(program, index, builder.ops, outer.out, result)


def _transpose_dot(program: Program, index: int) -> Iterator[Program]:
    """``dot(a W, b)`` -> ``dot(a, b W^T)`` (either operand of the dot)."""
    op = program.ops[index]
    if op.kind != OpKind.DOT:
        return
    producers = program.producers()
    for side in (0, 1):
        lin = producers.get(op.inputs[side].id)
        other = op.inputs[1 - side]
        if lin is None or lin.kind != OpKind.TYPED_LINEAR:
            continue
        a, w = lin.inputs
        builder = Builder.after(program)
        builder.loc = op.loc
        moved = builder.emit(OpKind.TYPED_LINEAR, (other, w), per_head=lin.attr("per_head") or None,
                             transpose_w=(not lin.attr("transpose_w")) or None)
        if moved.shape != a.shape:
            moved = builder.emit(OpKind.RESHAPE, (moved,), shape=a.shape)
        result = builder.emit(OpKind.DOT, (a, moved))
        if result.shape != op.out.shape:
            continue
        yield splice(program, index, builder.ops, op.out, result)


def candidates(program: Program) -> Iterator[tuple[str, Program]]:
    for index, op in enumerate(program.ops):
        folded = _fold_chain(program, index)
        if folded is not None:
            yield f"folded {op.loc or 'a typed_linear chain'} into one weight", folded
        for moved in _transpose_dot(program, index):
            yield f"moved a weight across the dot at {op.loc or 'a dot'}", moved


def run(program: Program, ctx: PassContext) -> Program:
    return improve(program, ctx, NAME, candidates)
