"""Images: the store (store.py), the built-in ``mini`` image (mini.py) and
safe tarball import (tarsafe.py)."""
