"""The dispatcher role: calls node containers for dispatched tasks."""

from services.dispatcher.backlog import Backlog
from services.dispatcher.call import CallPolicy, call_node, target_url
from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.worker import Dispatcher

__all__ = ["Backlog", "CallPolicy", "Dispatcher", "OffsetTracker", "call_node", "target_url"]
