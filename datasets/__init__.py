"""Loaders for real data formats, and the small real datasets bundled for the defaults."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
