"""The graphcore compiler: level-1 relational IR, passes, level-2 kernel specs, backends.

Nothing in this package knows about a particular model: a pass sees IR, a backend sees specs.
"""
