"""Custom nodes for pipelines: the libraries of `custom_node_library_config_list`, of two kinds behind one
interface.

- `interface.py`: what both kinds implement (a library loads, makes one node per pipeline node; a node executes on
  the user-code pool and is deinitialized once nothing uses it), and the library entries of config.json;
- `loader.py`: which kind a `base_path` is, and loading it;
- `c_library.py` with `abi.py`: OVMS's compiled C libraries through ctypes, unchanged;
- `python_library.py`: the same calls as functions of a Python module.

It may import scheduling (the inline choice, and the user-code pool its nodes run on), tensors, observability and
errors; never the repository, the servables that run it (`pyovms/servables/pipelines/`), the control layer, the
core, the front ends or the wiring.
"""
