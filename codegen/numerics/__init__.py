"""The numerical ground truth every level shares: elementwise tables and segment reductions.

They sit below the IR because the eager ops (:mod:`graphcore.ops`), the level-1 interpreter,
the verifier's op tables and the reference backend all need one definition of each function.
"""
