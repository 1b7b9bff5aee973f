"""Measures only: the engine bench against raw engine calls, the browser bench, the
JSONSchemaBench suite (it drives an engine through run/, so it sits above run/), launch."""
