"""The operator's dashboard at `/ui` (`install` mounts it on the ingress's app)."""

from services.ui.router import install

__all__ = ["install"]
