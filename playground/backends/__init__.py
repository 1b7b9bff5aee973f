"""The grammar libraries (xgrammar, llguidance, vLLM's request check), imported lazily:
a constraint as each backend receives it. They know constraints, never engines; the
matcher, the doctor, copy as code and the engines all convert through here."""
