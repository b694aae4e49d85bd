"""Unit tests of pyovms/frontends/: the status tables of gRPC and REST, without a server."""
