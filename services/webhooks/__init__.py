"""The webhooks role: signed webhooks (Standard Webhooks) of the tasks that ask for them.

`targets` (where a webhook may go), `secrets` (each workspace's signing secret, derived),
`salts` (the key, and the fold of the workspaces' salts), `payload`, `delivery` (one
attempt), `retry`, `state` (the pure fold of the task topic) and `worker` (the role). The
package imports nothing itself: the ingress uses `targets` and `secrets` without loading
the role."""
