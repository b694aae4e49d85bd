"""What the tests share and test nothing themselves: a pyovms server in a subprocess (`server_process.py`), the
models the tests build with OpenVINO (`models.py`), the C and Python custom node libraries they compile or write
(`c_libraries.py`, `python_libraries.py`), graph repositories (`graph_repository.py`) and the run's check that
nothing leaves the machine (`network_guard.py`)."""
