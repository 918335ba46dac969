"""Lightning tasks, each runnable as ``python -m tasks.<name> fit|validate|test|predict``."""
