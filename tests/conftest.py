import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
# the repository root, last: `benchmarks` (not an installed package) imports from here, while an
# installed ufm / solvers / theory_checks still come from site-packages
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("MPLBACKEND", "Agg")        # figures and the explorer run headless

import ufm  # noqa: E402,F401  (float64 on before any test builds arrays)
