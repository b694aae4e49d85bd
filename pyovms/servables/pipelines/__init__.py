"""DAG pipelines (`pipeline_config_list`): models and custom nodes wired into one servable.

A pipeline is a servable like a model version: it is found by name after models (spec §2.2), is unversioned
(always version 1; a request's version must still parse), validates requests against its own inputs, and answers
with the outputs its `outputs` section names. Its inputs are the implicit `request` node's outputs and its outputs
the implicit `response` node's inputs; `DL model` nodes run a served model, `custom` nodes a C or Python library
(`pyovms.custom_nodes`).

- `config.py`: a `pipeline_config_list` entry as dataclasses;
- `loading.py`: the load-time checks with OVMS's messages (spec §5.3), which build a `Pipeline`;
- `pipeline.py`: the servable: every node an asyncio task, intermediate tensors passed as views;
- `branches.py`: demultiplexing, a node's outputs cut into branches and stacked again.

It may import the repository (the models its nodes run), custom nodes, tensors, observability and errors.
"""
