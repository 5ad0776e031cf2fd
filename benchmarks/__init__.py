"""DANNet Edge benchmarks: latency and mIoU, side by side with the reference implementation."""
