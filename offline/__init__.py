"""Offline stand-ins for ChartHop and AWS: the emulator, the moto stack and the demo."""
