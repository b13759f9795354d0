"""filelink: the file-share linkage engine (システム間連携機能).

Systems exchange data files through folders on a file server; only the
systems in an exchange may read, change or delete its files. filelink lays
out and permissions that folder tree, picks up complete files from each
sender's outbox and delivers them to every receiver's inbox exactly once,
converting character codes where a route asks, with a journal that survives
crashes and a transfer log. It is independent of mailintake.
"""

__version__ = "0.1.0"
