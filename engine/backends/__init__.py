"""Model backends: anything that turns a prompt into an async stream of chunks."""

from sluice.engine.backends.base import Backend, BackendError, StreamInfo, StreamTruncated
from sluice.engine.backends.demo import DemoModel

__all__ = ["Backend", "BackendError", "DemoModel", "StreamInfo", "StreamTruncated"]
