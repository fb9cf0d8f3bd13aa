import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
os.environ.setdefault("MPLBACKEND", "Agg")        # figures and the explorer run headless

import ufm  # noqa: E402,F401  (float64 on before any test builds arrays)
