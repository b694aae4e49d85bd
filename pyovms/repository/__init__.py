"""The model repository: what is configured, where models are stored, and what is served now.

- `registry.py`: `Repository`, the servables served now by name and version, with their states and default
  versions, and the lookups of every request;
- `servable.py`: the interface the registry holds its servables by (pyovms/servables/ implements it);
- `config.py`: config.json's schema and `ModelConfig`;
- `version_policy.py`: which versions of a model directory are served (all, latest, specific);
- `remote_storage.py`: model directories in object storage (s3://, gs://, az://) and the local copy;
- `demo.py`: the built-in demo repository (`pyovms --demo`).

It may import custom nodes (the registry holds their libraries), scheduling (pool settings), tensors,
observability and errors; never the servables' implementations, the control layer, the core or the front ends.
"""
