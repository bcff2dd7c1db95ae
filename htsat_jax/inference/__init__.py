"""Inference: ``AudioTagger`` (``tagger``), windows of long audio (``windowing``), frame maps ->
events (``events``), the predict CLI (``predict``) and ONNX export (``export``)."""
