"""The greeter's tests: ``python -m pytest contrib/greeter/tests`` (the ``micro_harness`` fixture comes
from micro's pytest plugin, installed with the core)."""

import sys
from pathlib import Path

# So `greeter` imports as a package from contrib/, as the demo does.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
