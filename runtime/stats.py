"""Per-stage latency and throughput of a running pipeline, in constant memory.

Latencies go into log-spaced histograms (1 % wide bins from 1 us to 1000 s), so a camera running for
days keeps the same few kilobytes of statistics and percentiles stay within 1 %.
"""
from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np

STAGES = ("capture", "preprocess", "inference", "temporal", "overlay", "output", "end_to_end")


class LatencyHistogram:
    LOW, HIGH, STEP = 1e-6, 1e3, 1.01

    def __init__(self) -> None:
        self.bins = int(math.log(self.HIGH / self.LOW) / math.log(self.STEP)) + 1
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        index = int(math.log(max(seconds, self.LOW) / self.LOW) / math.log(self.STEP))
        self.counts[min(index, self.bins - 1)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float:
        """Seconds below which ``q`` percent of the samples fall (the bin's geometric middle)."""
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, q / 100 * cumulative[-1]))
        return self.LOW * self.STEP ** (index + 0.5)

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {}
        return {"count": self.count, "mean_ms": round(1e3 * self.total / self.count, 3),
                **{f"p{q}_ms": round(1e3 * self.percentile(q), 3) for q in (50, 90, 99)}}


class PipelineStats:
    """Counters and stage latencies, for the whole run and for the current reporting window."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        # dropped: by our live queue (inference behind); lost_upstream: before it (GStreamer/camera);
        # temporal_resets: --temporal started afresh (a scene cut, a new size, the source reopened);
        # unreadable: input images skipped because they could not be read; output_skipped: pictures a live
        # output let go because its consumer was behind (an RTSP stream's encoder), written but never sent
        self.counts = {"captured": 0, "dropped": 0, "lost_upstream": 0, "processed": 0, "written": 0, "reconnects": 0,
                       "temporal_resets": 0, "unreadable": 0, "output_skipped": 0}
        self.total = {stage: LatencyHistogram() for stage in STAGES}
        self._new_window()

    def _new_window(self) -> None:
        self.window = {stage: LatencyHistogram() for stage in STAGES}
        self.window_counts = dict(self.counts)
        self.window_started = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.total[stage].add(seconds)
            self.window[stage].add(seconds)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def _report(self, histograms: dict[str, LatencyHistogram], counts: dict[str, int], since: float) -> dict:
        seconds = max(time.perf_counter() - since, 1e-9)
        return {"elapsed_s": round(time.perf_counter() - self.started, 3), **counts,
                "fps_in": round(counts["captured"] / seconds, 2), "fps_out": round(counts["written"] / seconds, 2),
                "stages": {s: h.summary() for s, h in histograms.items() if h.count}}

    def window_report(self) -> dict:
        """The window since the last call (counts within it), then a new window starts."""
        with self.lock:
            counts = {k: v - self.window_counts[k] for k, v in self.counts.items()}
            report = self._report(self.window, counts, self.window_started)
            self._new_window()
        return report

    def summary(self) -> dict:
        with self.lock:
            return {"summary": True, **self._report(self.total, dict(self.counts), self.started)}


def format_report(report: dict) -> str:
    """One line for the terminal: throughput, queue losses, median stage latencies."""
    stages = report["stages"]
    parts = [f"{name.replace('_', '-')} {stages[name]['p50_ms']:.1f}" for name in STAGES if name in stages]
    return (f"[{report['elapsed_s']:7.1f} s] {report['fps_in']:6.1f} fps in, {report['fps_out']:6.1f} fps out, "
            f"{report['dropped']} dropped | p50 ms: {', '.join(parts)}")


def format_summary(report: dict) -> str:
    """The table printed at exit: counts, throughput and p50/p90/p99 per stage. Unreadable input images and
    pictures an RTSP output let go are named only when there were some: only image inputs and RTSP outputs
    can have them."""
    unreadable = f"{report['unreadable']} unreadable images skipped, " if report["unreadable"] else ""
    behind = f"{report['output_skipped']} skipped by an output behind, " if report["output_skipped"] else ""
    lines = [f"frames: {report['captured']} captured, {report['processed']} processed, {report['written']} written, "
             f"{report['dropped']} dropped, {report['lost_upstream']} lost upstream, {unreadable}{behind}"
             f"{report['reconnects']} reconnects in {report['elapsed_s']:.1f} s ({report['fps_out']:.1f} fps out)",
             f"{'stage':<12}{'mean ms':>9}{'p50':>9}{'p90':>9}{'p99':>9}"]
    for name, s in report["stages"].items():
        lines.append(f"{name:<12}{s['mean_ms']:>9.2f}{s['p50_ms']:>9.2f}{s['p90_ms']:>9.2f}{s['p99_ms']:>9.2f}")
    return "\n".join(lines)


class JsonLines:
    """``--stats-json FILE``: one JSON object per report, flushed so a crash keeps what was written. Missing
    folders on the way are created, as for every other output."""

    def __init__(self, path: str | None) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] | None = open(path, "w") if path else None

    def write(self, report: dict) -> None:
        if self.file:
            self.file.write(json.dumps(report) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
