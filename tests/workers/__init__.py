"""Unit tests of pyovms/workers/: the supervisor's bookkeeping, without a server."""
