"""Unit tests of pyovms/repository/: config.json, version policies and version strings, without a server."""
