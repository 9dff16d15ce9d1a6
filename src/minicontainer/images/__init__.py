"""Images: the store (store.py), the built-in ``mini`` image (mini.py) and
safe import: tarballs read by tarread.py, written by safetree.py (also the
writer of ``image import-dir``, importer.py)."""
