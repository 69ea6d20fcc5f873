from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds helper modules (memory_provider) imported by several test files.
sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["pytester"]
