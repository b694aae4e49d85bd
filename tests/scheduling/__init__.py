"""Unit tests of pyovms/scheduling/: the infer-request pool and the user-code pools, without a server."""
