"""``python -m tasks.rgnn fit|validate|test|predict``; see :mod:`tasks.rgnn.cli`."""
from graphcore.tasks.rgnn.cli import main

if __name__ == "__main__":
    main()
