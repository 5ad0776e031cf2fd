"""DANNet Edge runtime: what runs in the car.

``pipeline`` (``dannet-run``): capture (``sources``) -> inference (``backends`` behind ``segmenter``) ->
overlay (``overlay``) -> output (``sinks``), URIs parsed by ``uris``, statistics in ``stats``. The core
depends on numpy and Pillow only (Jetson images often lack torch); GStreamer (``gst``) and the backends'
libraries are imported when used, with an error that says how to install them when missing.
"""
