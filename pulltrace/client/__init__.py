"""Where pull data comes from (``source.py`` and one module per back end) and the store the
views apply it to.

httpx is imported here without its command-line module: ``httpx/__init__`` imports
``httpx._main`` whenever click, rich and pygments are installed (they are, with Textual and
Typer), which tripled the start-up time of ``pulltrace ls`` (bench/startup.py). A ``None`` in
``sys.modules`` makes that one import fail, and httpx then defines a stub ``main`` instead;
nothing in pulltrace runs httpx's command line.
"""

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
