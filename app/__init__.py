"""Gradio demo (prompt-to-image and retrieval); imports pipelines only. Filled by a later issue."""
