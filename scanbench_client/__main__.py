"""``python -m scanbench_client``: the same as the ``scanbench`` command."""

from __future__ import annotations

import sys

from scanbench_client.cli import main

sys.exit(main())
