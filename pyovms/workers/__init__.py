"""`--grpc_workers N`: N server processes sharing the gRPC port through SO_REUSEPORT, answering as one server.

One Python process serves at most one core's worth of gRPC and Python work (the GIL), so the command, when asked for
more than one worker, becomes a small supervisor: it starts N copies of itself with the same flags, each with its own
repository and compiled models, and the kernel spreads incoming *connections* over them (balancing is per connection,
not per request: one client channel always talks to one worker).

The supervisor and each worker share a socket pair (JSON lines); requests never pass through the supervisor. A
control call a client sends to one worker (load, unload, config reload, shared memory register and unregister) is
applied by every worker before it is answered, and replayed to a worker that starts later; ModelStatistics and
`/metrics` are summed over the workers, with the last counts of workers that have ended. A worker says when its
initial load has finished; the supervisor tells every worker whether all of them are ready, and a worker answers
ready only then, so the server's readiness is every worker's. A worker that dies after its initial load is replaced
by a new one (its clients reconnect to the others meanwhile), at most MAX_RESTARTS times in RESTART_WINDOW_S; a
worker that fails before it is ready (a busy port, a bad configuration), or a crash loop, stops the others and the
supervisor exits non-zero, so a process manager sees the failure. SIGINT and SIGTERM are forwarded to every worker.

The workers share the cores: each one's OpenVINO gets `available_cores() // N` threads (`inference_threads`), so N
workers do not each size their thread pools to the whole machine. `--grpc_workers auto` starts one worker per
available core, counting the process's CPU affinity and its cgroup's CPU quota (a container's `--cpus`).

- `supervisor.py`: the supervisor process: starts, watches, replaces and stops the workers, relays control calls
  and keeps their history;
- `link.py`: a worker's end of its channel to the supervisor (the core's `Peers`);
- `cores.py`: how many cores the process may use, and each worker's share for OpenVINO.

It may import `settings` (what the supervisor starts the workers with), the repository's demo builder and
observability (to sum what ended workers reported); the wiring (`server.py`, `cli.py`) imports it, and the core
reaches the link only through its `Peers` protocol.
"""
