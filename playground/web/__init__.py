"""The Gradio page: it lays out components and wires events to plain functions, which
tests call directly."""
