"""Example workflows that ship with the package, so `python -m dataflow demo` works in an empty
folder after `pip install`. The CLI looks in `./workflows/` first (a user's own `demo.py`
wins), then here. The repository's `workflows/demo.py` and `workflows/conrad.py` are symlinks
to these files: one copy of each."""
