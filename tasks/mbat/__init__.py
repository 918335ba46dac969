"""JSON embeddings with orthogonal MBAT binding: encode, query and search any JSON.

After "Orthogonal Matrices for MBAT Vector Symbolic Architectures, and a 'Soft' VSA
Representation for JSON". Import the pieces from their modules:
:class:`tasks.mbat.encoder.JsonEncoder`, :func:`tasks.mbat.query.query`,
:class:`tasks.mbat.index.ExactIndex`.
"""
