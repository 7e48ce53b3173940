"""The scheduler's pure core: cluster state folded from events, node selection through
filter and score plugins, replica placement and the waiting queue. No I/O, no clock:
time comes in as a value. The runners (bus consumers) live elsewhere and only decode,
call and emit."""

from services.scheduler.binpack import GpuPool
from services.scheduler.config import DEFAULT_FILTERS, DEFAULT_WEIGHTS, SchedulerSettings
from services.scheduler.core import (
    DEFAULT_PROFILE,
    WORKSPACE,
    dispatch_event,
    retry_event,
    schedule,
)
from services.scheduler.decision import Placement, ScheduleRequest, Unschedulable
from services.scheduler.errors import (
    InvalidSchedulerSettings,
    NaiveDatetimeError,
    NotRetryableError,
    SchedulerError,
    StalePlacementError,
    UnknownPluginError,
)
from services.scheduler.gpu import normalize_gpu_type
from services.scheduler.profile import Profile, build_profile
from services.scheduler.queue import WaitQueue
from services.scheduler.records import (
    Assignment,
    DeploymentPhase,
    DeploymentState,
    NodeState,
    NodeStatus,
    QueuedTask,
    TaskPayload,
    WorkspaceSpec,
)
from services.scheduler.replicas import deployment_id_for, detect_lost_nodes, plan_replicas
from services.scheduler.rounds import cancel_requested, check_keys, dispatch_waiting
from services.scheduler.state import ClusterState

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_PROFILE",
    "DEFAULT_WEIGHTS",
    "WORKSPACE",
    "Assignment",
    "ClusterState",
    "DeploymentPhase",
    "DeploymentState",
    "GpuPool",
    "InvalidSchedulerSettings",
    "NaiveDatetimeError",
    "NodeState",
    "NodeStatus",
    "NotRetryableError",
    "Placement",
    "Profile",
    "QueuedTask",
    "ScheduleRequest",
    "SchedulerError",
    "SchedulerSettings",
    "StalePlacementError",
    "TaskPayload",
    "UnknownPluginError",
    "Unschedulable",
    "WaitQueue",
    "WorkspaceSpec",
    "build_profile",
    "cancel_requested",
    "check_keys",
    "deployment_id_for",
    "detect_lost_nodes",
    "dispatch_event",
    "dispatch_waiting",
    "normalize_gpu_type",
    "plan_replicas",
    "retry_event",
    "schedule",
]
