"""What several `--grpc_workers` processes report, summed into one server's figures."""

from __future__ import annotations

from pyovms.observability.metrics import merge_expositions
from pyovms.observability.statistics import BUCKETS_US, InferStatistics

ONE = """# HELP ovms_requests_success Number of successful requests to a model or a DAG.
# TYPE ovms_requests_success counter
ovms_requests_success{name="a"} 3.0
ovms_requests_success{name="b"} 1.0
# HELP ovms_current_requests Number of inference requests currently in process.
# TYPE ovms_current_requests gauge
ovms_current_requests{name="a"} 2.0
"""
OTHER = """# HELP ovms_requests_success Number of successful requests to a model or a DAG.
# TYPE ovms_requests_success counter
ovms_requests_success{name="a"} 4.0
ovms_requests_success{name="c"} 5.0
# HELP ovms_current_requests Number of inference requests currently in process.
# TYPE ovms_current_requests gauge
ovms_current_requests{name="a"} 1.0
"""


def test_samples_are_summed_by_series_in_the_order_they_first_appear():
    assert merge_expositions([ONE, OTHER]) == (
        "# HELP ovms_requests_success Number of successful requests to a model or a DAG.\n"
        "# TYPE ovms_requests_success counter\n"
        'ovms_requests_success{name="a"} 7.0\n'
        'ovms_requests_success{name="b"} 1.0\n'
        'ovms_requests_success{name="c"} 5.0\n'
        "# HELP ovms_current_requests Number of inference requests currently in process.\n"
        "# TYPE ovms_current_requests gauge\n"
        'ovms_current_requests{name="a"} 3.0\n'
    )


def test_an_ended_process_keeps_its_counters_not_its_gauges():
    ended = merge_expositions([ONE], counters_only=True)
    assert "ovms_current_requests" not in ended
    assert 'ovms_requests_success{name="a"} 3.0' in ended
    assert merge_expositions(["", ""]) == ""


def test_statistics_travel_as_plain_values_and_add_up():
    one, other = InferStatistics(), InferStatistics()
    one.success.add(2_000)
    one.queue.add(50_000)
    one.inference_count = one.execution_count = 1
    one.last_inference_ms, other.last_inference_ms = 5, 9
    other.success.add(3_000)
    other.in_flight = 2
    total = InferStatistics.from_dict(one.as_dict())
    total.merge(InferStatistics.from_dict(other.as_dict()))
    assert (total.success.count, total.success.ns) == (2, 5_000)
    assert (total.queue.count, sum(total.queue.buckets), len(total.queue.buckets)) == (1, 1, len(BUCKETS_US) + 1)
    assert (total.inference_count, total.in_flight, total.last_inference_ms) == (1, 2, 9)
    assert one.success.count == 1  # merging copies, it never changes what it reads
