"""Where pull data comes from (``source.py`` and one module per back end) and the store the
views apply it to.

httpx (the live stream's client) is imported without its command-line module: ``httpx/__init__``
imports ``httpx._main`` whenever click, rich and pygments are installed (they are, with Textual
and Typer), which doubled httpx's import time (``python -X importtime``: 110 of 200 ms on a
loaded machine) for ``wait`` and ``ls --watch``. A ``None`` in ``sys.modules`` makes that one
import fail, and httpx then defines a stub ``main``; nothing in pulltrace runs httpx's CLI.
"""

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
