#!/usr/bin/env python3
"""Print the pip requirements of the test image, one per line, from pyproject.toml.

Both images (the Dockerfile's and the offline one that scripts/docker-test
builds) install exactly these: the project's dependencies and its "test"
extra. pyproject.toml stays the single place where they are listed.

Usage: requirements.py [PATH/TO/pyproject.toml]   (default: the repo's)
"""

import sys
import tomllib
from pathlib import Path

path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "pyproject.toml"
project = tomllib.loads(path.read_text())["project"]
for requirement in project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", []):
    print(requirement)
