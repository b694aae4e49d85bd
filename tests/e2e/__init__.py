"""End-to-end tests: each starts a real pyovms server (the session's shared one from conftest.py, or one of its
own) on 127.0.0.1 and talks to it with real clients: tritonclient, raw gRPC stubs, HTTP."""
