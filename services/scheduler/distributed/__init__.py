"""The distributed scheduler: the pure core's `SchedulerRunner`, run by whichever member of
a faust-streaming app's consumer group is its leader; the other members are hot standbys.

Entry point: `run_scheduler_app(settings, stopping)` (`main.py`).

How two workers never double-book a slot: one decider at a time.
- Faust's leader assignor gives the one partition of the app's leader topic to exactly
  one member of the group (`ngpu-scheduler`, prefixed by `NGPU_KAFKA_NAMESPACE`). That
  member runs a `SchedulerRunner` (`Leadership`); the others only keep their membership.
- Rebalances are eager: every member's revocation runs, and is awaited, before the group
  assigns anything. On revocation the leader closes its `LeaderGate` (every later publish
  raises `NotLeaderError` and writes nothing), cancels its runner and waits for the batch
  it was publishing to be stored or to fail, and only then rejoins. On shutdown it does
  the same before leaving the group, so a standby takes over at once; a killed leader is
  replaced once its session times out (`GroupTiming`).
- Each term starts a fresh runner that rebuilds `ClusterState` from the whole log, through
  a `CatchUpConsumer`: no decision before every record that was in the log when the term
  began has been folded (all of the previous leader's decisions among them), and the
  workspace and node topics first, because the fold only counts a dispatch against a
  replica it already knows.

Why not partitioned ownership: slots are per node and shared by every workspace's tasks,
so tasks split by partition would need slot quotas per worker; one decider keeps
placement optimal and the core unchanged, and a standby takes over within one rebalance.
The cost: decisions do not scale past one process, and every rebalance (even one that
leaves the leader in place, e.g. a standby joining) restarts the runner, which replays
the whole log before it decides again.

Limits (the residual zombie window). Leadership is what this process was last told; a
leader that cannot hear about the rebalance that replaces it can still publish until it
does. Faust's heartbeats come from its consumer thread, so a busy event loop does not
lose the group (the rebalance waits up to `rebalance_timeout_s` for its revocation). A
leader can be replaced without being told when the whole process freezes (SIGSTOP, a VM
pause) past the session timeout: on waking it may publish one round of decisions made on
a stale state before its revocation runs. With several brokers, a leader that loses the
group coordinator but still reaches the partition leaders keeps deciding until it reaches
the coordinator again. What limits the damage:
- the gate is checked before every publish, so the window closes as soon as the
  revocation reaches the event loop, and a publish already started is bounded by
  `NGPU_KAFKA_PUBLISH_TIMEOUT_S` (`KafkaBus` drops what it has not sent by then);
- `ClusterState` ignores a second `TaskDispatched` for an attempt already dispatched, and
  per task the log order decides which one counts, so every fold agrees; the dispatcher
  that holds the task's partition calls the node once per (task, attempt), so a second
  dispatch of the same attempt is not called (after a rebalance moved the partition, the
  new holder may call it again, with the same `X-NGPU-Task-ID` and `X-NGPU-Attempt`);
  the first terminal event wins. The zombie's dispatches of tasks the new leader has
  not dispatched yet (or to a node whose slots it filled) can still overbook a node
  until they finish.
Closing the window needs fencing at the broker: a transactional producer with one
`transactional.id` per app (a new leader's `init_transactions` fences the old one's
writes) and `read_committed` consumers; `KafkaBus` has neither today.
"""

from services.scheduler.distributed.app import APP_ID, GroupTiming, app_id, build_app
from services.scheduler.distributed.catchup import CatchUpConsumer, log_ends
from services.scheduler.distributed.errors import NotLeaderError, SchedulerAppError
from services.scheduler.distributed.gate import LeaderGate, TermBus
from services.scheduler.distributed.leadership import Leadership
from services.scheduler.distributed.main import run_scheduler_app

__all__ = [
    "APP_ID",
    "CatchUpConsumer",
    "GroupTiming",
    "LeaderGate",
    "Leadership",
    "NotLeaderError",
    "SchedulerAppError",
    "TermBus",
    "app_id",
    "build_app",
    "log_ends",
    "run_scheduler_app",
]
