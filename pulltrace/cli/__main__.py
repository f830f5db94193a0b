"""``python -m pulltrace.cli``, as the tests and the e2e stack run the shipped command."""

from pulltrace.cli import main

raise SystemExit(main())
