"""Handing registered 収受文書 to the document system: the event feed and
acknowledgements (feed), the record every consumer reads (records), the
document package (package), push mode into the linkage engine's outbox
(push) and the 目録 export (catalogue)."""
