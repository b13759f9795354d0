"""mailintake: receives mail forwarded for designated addresses and keeps it
for 収受 (receipt registration) in the document management system."""

__version__ = "0.1.0"
