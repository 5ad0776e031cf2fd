"""DANNet Edge training: networks, data, losses and the DANNet adaptation loop."""
