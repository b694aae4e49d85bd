"""What the server tells about itself: statistics, metrics and the log.

- `statistics.py`: cumulative inference statistics per servable (Triton's statistics extension), latency histograms;
- `metrics.py`: Prometheus metrics with OVMS's names and labels, read from the statistics at scrape time;
- `logs.py`: the log format and levels.

It imports only errors: every layer above may count into it. Metrics read the served models through the small
protocol they declare (`metrics.ServedModels`), which the repository's registry satisfies.
"""
