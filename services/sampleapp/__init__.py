"""A sample workspace app, shipped for tests and the demo: an img2img-shaped HTTP API that
does real, cheap work. Run it as `python -m services.sampleapp --port 8080` (or with `PORT`).

Routes:
- `GET /health` -> `{"ok": true}`
- `POST /img2img`, `POST /sdapi/v1/img2img`: any JSON body (`{"image_url", "prompt"}` in the
  contract) -> `{"result_code": 100, "msg", "image_url": "https://ngpu.ai/image/<hash>.jpeg",
  "task_id", "attempt", ...}`, `task_id`/`attempt` echoing `X-NGPU-Task-ID`/`X-NGPU-Attempt`;
  the sdapi form also answers a `taskID` that can be polled; a non-JSON body is a 400
- `POST /tasks[?delay_ms=N]` -> `{"taskID"}`; `GET /tasks/{id}` and `GET /img2img&taskID=…`
  -> its state (`running` until the delay passes, then `done` with the result); 404 if unknown
- `POST /sleep?ms=N`: answers after N ms (for timeouts and kills)
- `POST /hold?ms=N` (or a JSON body `{"ms": N}`): answers after N ms unless the caller
  closes the connection first; `GET`/`POST /holds` -> `{"holds": {"<X-NGPU-Task-ID>":
  "holding" | "closed" | "answered"}}` (for tests of cancelled calls)
- `POST /stream?n=N&gap_ms=M[&gate=G][&start_gate=S]` (or a JSON body of those): N
  server-sent events (`data: {"i": k, "task_id"}`), chunked, M ms apart; with `gate`, only
  the first until `POST /gates?open=G` (or 60 s) lets the rest go, with `start_gate` none
  until S opens (for tests of output that reaches the client before the container ends)
- `POST /echo`: the body and its Content-Type, unchanged
- `POST /headers` -> `{"headers": {"<lower-case name>": value}}`: the request's headers as
  received (for tests of what reaches the container, e.g. `traceparent`)
- `GET /whoami` -> `{"node": NGPU_NODE_ID, "pid", "port", "env": PORT and NGPU_* ids/ports}`
- `GET`/`POST /calls` -> `{"calls": {"<X-NGPU-Task-ID>": N}}`: how many requests of each
  task this process has received (any route; for tests counting repeated calls)
- `POST /fail?status=N`: answers status N (400..599); `POST /exit?code=N`: the process exits
  at once without answering (a crash, for restart and retry tests)
Bodies over 10 MB are refused with 413.
"""

from services.sampleapp.app import main, parse_args
from services.sampleapp.logic import NotJson, StoredTask, TaskStore, img2img
from services.sampleapp.server import MAX_BODY_BYTES, SampleHandler, SampleServer

__all__ = [
    "MAX_BODY_BYTES",
    "NotJson",
    "SampleHandler",
    "SampleServer",
    "StoredTask",
    "TaskStore",
    "img2img",
    "main",
    "parse_args",
]
