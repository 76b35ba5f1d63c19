"""The metrics endpoint's text exposition (Prometheus text format 0.0.4), written by hand."""

from __future__ import annotations

import pytest

from node.metrics import MetricFamily, MetricsBindError, MetricsServer, gauge, render_exposition


async def _nothing() -> list[MetricFamily]:
    return []


def test_gauges_render_help_type_and_samples() -> None:
    text = render_exposition(
        [
            gauge("dcent_height", "Last block height.", 42),
            MetricFamily(
                "dcent_jobs", "Jobs by state.", (((("state", "running"),), 2), ((("state", "settled"),), 5))
            ),
            MetricFamily("dcent_gpu_utilization", "GPU utilization.", ()),
        ]
    )
    assert text == (
        "# HELP dcent_height Last block height.\n"
        "# TYPE dcent_height gauge\n"
        "dcent_height 42\n"
        "# HELP dcent_jobs Jobs by state.\n"
        "# TYPE dcent_jobs gauge\n"
        'dcent_jobs{state="running"} 2\n'
        'dcent_jobs{state="settled"} 5\n'
        "# HELP dcent_gpu_utilization GPU utilization.\n"
        "# TYPE dcent_gpu_utilization gauge\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    text = render_exposition([MetricFamily("m", "a \\ b\nc", (((("uuid", 'GPU-"x"\\y\nz'),), 1.5),))])
    assert "# HELP m a \\\\ b\\nc\n" in text
    assert 'm{uuid="GPU-\\"x\\"\\\\y\\nz"} 1.5\n' in text


def test_special_float_values() -> None:
    text = render_exposition([MetricFamily("m", "h", (((), float("nan")), ((("k", "v"),), float("inf"))))])
    assert "m NaN\n" in text and 'm{k="v"} +Inf\n' in text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_metrics_bind_loopback_only(host: str) -> None:
    with pytest.raises(MetricsBindError) as refused:
        MetricsServer(_nothing, host=host, port=0)
    assert refused.value.code == 5801
