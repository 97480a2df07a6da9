"""DICOMweb (PS3.18) under /dicomweb/: STOW-RS, QIDO-RS and WADO-RS, with the API's tokens and access rules.

``views.py`` is the edge; ``instances.py`` lists what a user may see as DICOM
instances (received DICOM images, and Pneumo's own result objects through
``register_instance_source``); ``multipart.py``, ``json_model.py`` and
``transcode.py`` are pure helpers (no Django).
"""
