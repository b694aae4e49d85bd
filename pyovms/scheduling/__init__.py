"""Where and when work runs: OpenVINO infer-request pools and the thread pools of user code.

- `infer_requests.py`: the pool of `nireq` infer requests of one model version, the inline-or-asynchronous choice
  (shared with C custom nodes) and its failure watchdog, the queue limit;
- `user_code.py`: the thread pools custom nodes and Python nodes run on, with hung calls written off.

It imports only observability (the statistics it records) and errors.
"""
