"""Analyses of level-1 programs: facts about a program, no rewriting (the cost model)."""
