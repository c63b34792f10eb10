"""Counters and gauges, rendered in the Prometheus text format for `GET /metrics`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Metric:
    """One metric family: a counter or gauge with optional labels."""

    name: str
    help: str
    kind: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    read: Callable[[], dict[tuple[tuple[str, str], ...], float]] | None = None

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add to the value of the labelled series."""
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        """Set the value of the labelled series."""
        self.values[tuple(sorted(labels.items()))] = value

    def value(self, **labels: str) -> float:
        """Return the value of the labelled series, 0 if never set."""
        return self.values.get(tuple(sorted(labels.items())), 0.0)


class Registry:
    """The agent's metrics."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def counter(self, name: str, help: str) -> Metric:
        """Return the counter of this name, creating it on first use."""
        return self._family(name, help, "counter")

    def gauge(self, name: str, help: str, read: Callable[[], dict[tuple[tuple[str, str], ...], float]] | None = None) -> Metric:
        """Return the gauge of this name; `read` computes its values at scrape time."""
        metric = self._family(name, help, "gauge")
        if read is not None:
            metric.read = read
        return metric

    def render(self) -> str:
        """Return every metric in the Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        for metric in self._metrics.values():
            values = metric.read() if metric.read else metric.values
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            if not values:
                lines.append(f"{metric.name} 0")
            for labels, value in sorted(values.items()):
                lines.append(f"{metric.name}{_labels(labels)} {value:g}")
        return "\n".join(lines) + "\n"

    def _family(self, name: str, help: str, kind: str) -> Metric:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Metric(name, help, kind)
        elif metric.kind != kind:
            raise ValueError(f"metric {name} is a {metric.kind}, not a {kind}")
        return metric


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), "")}"'
        for name, value in labels
    )
    return "{" + ",".join(escaped) + "}"
