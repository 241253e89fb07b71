"""``python -m memories_geo.cli``: the ``memories-geo`` command."""

from memories_geo.cli import main

raise SystemExit(main())
