"""``python -m tasks.tabsim fit|validate|test|predict|score|search`` (see :mod:`tasks.tabsim.cli`)."""
from graphcore.tasks.tabsim.cli import cli_main

if __name__ == "__main__":
    cli_main()
