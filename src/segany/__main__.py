"""``python -m segany`` is the ``segany`` command."""

from .cli import main

raise SystemExit(main())
