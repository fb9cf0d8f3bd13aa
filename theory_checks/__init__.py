"""What the theory predicts for a problem, and checks that hold solutions against it."""

import ufm  # noqa: F401
