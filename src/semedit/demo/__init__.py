"""`semedit demo`: a local Gradio web app over the package's own functions.

- ``limits``: upload limits (bytes, pixels) and reading an upload safely.
- ``framing``: face alignment of uploads (the package's dlib path), centre crop only when unavailable.
- ``models``: the generator, hair model, directions and inversion settings (flags or embedded default).
- ``hair_tab``, ``chunky_tab``, ``generate_tab``: plain functions per tab, testable without a browser.
- ``app``: the Gradio layout, the queue and the server (``serve``); Gradio is imported only there.
"""
