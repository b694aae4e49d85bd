"""Unit tests of pyovms/servables/: graph.pbtxt parsing and the graph runtime, without a server."""
