"""The REST front end: KServe v2 over HTTP with the binary tensor extension, on aiohttp."""
