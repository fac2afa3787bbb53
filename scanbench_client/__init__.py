"""``scanbench``: the command-line client and Python API of a Scanbench server (docs/client.md).

Django-free: it needs only ``requests`` (and, for ``scanbench score``, the ``evaluator``
package installed with it)."""

from __future__ import annotations

from scanbench_client._version import __version__
from scanbench_client.client import Client, ScanbenchError, config_path

__all__ = ["Client", "ScanbenchError", "__version__", "config_path"]
