"""``python -m greeter`` (from ``contrib/``): run the demo."""

from __future__ import annotations

import asyncio
import sys

from greeter.demo import main

sys.exit(asyncio.run(main()))
