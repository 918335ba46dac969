r"""PyG models under :func:`graphcore.compile`: their layers substituted by graphcore's.

``graphcore.compile(pyg_model)`` accepts a model that contains PyG's ``RGCNConv``,
``FastRGCNConv``, ``RGATConv`` (additive self-attention, across- or within-relation),
``HGTConv``, ``HeteroConv`` over ``GraphConv``/``SAGEConv``, and models made by ``to_hetero``
(``aggr="sum"`` or ``"mean"``) over ``GraphConv``/``SAGEConv`` (:mod:`graphcore.pyg.to_hetero`),
and is called the PyG way (:mod:`graphcore.pyg.frontend`). Each layer runs its
graphcore equivalent on views of its own parameters (:mod:`graphcore.pyg.layers`); the rest of
the model (``nn.Linear`` on node rows, activations, dropout) is compiled with it, and what the
compiler cannot express runs eagerly between compiled regions (graph breaks).
"""
from graphcore.pyg.frontend import SUPPORTED, GraphCache, check_model, is_pyg_model, pyg_call

__all__ = ["SUPPORTED", "GraphCache", "check_model", "is_pyg_model", "pyg_call"]
