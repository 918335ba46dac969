"""``python -m tasks.traffic fit|validate|test|predict|plot``."""
from graphcore.tasks.traffic.cli import main

if __name__ == "__main__":
    main()
