"""The playground's own concepts, pure: constraints, JSON Schema and Lark checks, limits,
settings and presets. Stdlib, pydantic, jsonschema, referencing, lark, re2 and yaml only:
no torch, gradio, xgrammar or engine, so `check` answers in under a second."""
