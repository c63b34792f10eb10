"""Ringboard's browser UI: Python that runs in Pyodide and renders the live call board.

Only `dom` and `main.start` touch the browser (`js`, `pyodide`). The other modules are
plain Python, so they run and are tested under CPython 3.11 as well as Pyodide's 3.14.
"""
