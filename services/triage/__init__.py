"""Real-time triage: Zendesk "ticket created" webhooks → inbox → champion scoring → write-back in seconds.

The scheduled ``hourly-pipeline`` stays the system of record and the safety net: the service writes the same
prediction history (flagged ``realtime``) and drives the same write-back state machine, so the sweep neither
re-pushes what the service tagged nor misses what it did not. See docs/triage.md.
"""
