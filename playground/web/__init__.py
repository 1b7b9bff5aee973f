"""The Gradio page: it lays out components and wires events to plain functions, which
tests call directly."""

from playground.web.gradio_stubs import skip_stub_writing

skip_stub_writing()  # before any module here imports gradio
