"""``python -m tasks.mbat {encode,search,query,fit} --help``."""
from graphcore.tasks.mbat.cli import main

if __name__ == "__main__":
    main()
