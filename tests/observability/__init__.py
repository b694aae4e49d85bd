"""Unit tests of pyovms/observability/: statistics and metrics summed over processes, without a server."""
