"""Table similarity after TabSim (Habibi et al., 2020): a Siamese network over caption, content
and structure, with lexical pair features, calibrated scores, and score/search tools.

Run ``python -m tasks.tabsim --help``.
"""
