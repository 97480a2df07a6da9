"""Pneumo on the hospital's DICOM network: the listener (C-ECHO, C-STORE in), the result outbox (C-STORE out).

``listener`` receives images from modalities and PACS and hands each one to the
same ingest service as an upload; ``outbox`` queues Pneumo's result objects
(built by ``results``) for each configured destination and sends them with
retries; ``network`` holds what both sides share (transfer syntaxes, AE title
parsing).
"""
