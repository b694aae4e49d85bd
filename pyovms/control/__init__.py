"""The control layer: what is served, built and kept up to date.

- `model_manager.py`: builds servables into the repository (models local or remote, custom node libraries,
  pipelines, graphs) and applies a changed configuration, each model on its own;
- `config_watcher.py`: follows config.json and the model directories (polling, `/v1/config/reload`), with the pins
  of explicit loads and unloads laid over config.json;
- `repository_extension.py`: the model repository extension (index, explicit load and unload).

It sits above the servables it builds and the repository it fills, and below the core, which calls it for the
repository extension. It never imports the front ends or the wiring.
"""
