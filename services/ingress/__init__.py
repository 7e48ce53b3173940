"""The ingress: the HTTP API (FastAPI) that turns requests into events."""

from services.ingress.app import create_app, server_config
from services.ingress.context import IngressContext
from services.ingress.directory import Directory
from services.ingress.follower import DirectoryFollower

__all__ = ["Directory", "DirectoryFollower", "IngressContext", "create_app", "server_config"]
