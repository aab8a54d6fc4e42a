"""An emulator of the Elasticsearch APIs the tool uses, faithful to 8.16 to 8.19 and 9.x.

It imports nothing from the rest of the package but the service catalog (a checked rule, see
tests/test_architecture.py), so it stays a double of Elasticsearch rather than of the tool.
"""

from reconciler.emulator.app import Emulator
from reconciler.emulator.cluster import EmulatorConfig
from reconciler.emulator.server import serve

__all__ = ["Emulator", "EmulatorConfig", "serve"]
