"""The constraint doctor: what each backend really enforces, and tools around a run.

- `coverage`: the per-keyword, per-backend table of a JSON Schema, built from
  `sites` (the keywords and their paths), `testers` (each backend's compiler and matcher,
  remembered per process), `rejected` (which keywords a backend refuses), `probes` (a
  document breaking one keyword) with `breaks` (the per-keyword table of values to try)
  and `instances` (small valid documents).
- `lenient`: what a lenient run sends and what it gives up.
- `sent`: a constraint as the engine's backend receives it.
- `test_strings`: the user's strings judged by the validator and every backend.
- `dialect`: where a regex or Lark dialect reads differently in an engine.
- `conformance`: the official JSON Schema Test Suite through the validator and every
  backend, keyword by keyword, and the shipped table (`conformance.json`) the doctor reads.
- `mask_diff`: where xgrammar's and llguidance's token masks differ along one output.
"""
