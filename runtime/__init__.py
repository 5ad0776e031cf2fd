"""DANNet Edge runtime: what runs in the car.

The core of this package depends on numpy only (Jetson images often lack torch); optional backends
import their libraries lazily and say how to install them when missing.
"""
