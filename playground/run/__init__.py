"""What a click does: check the request, run both sides, judge, time (service.py is the
one place that times) and keep the one RunResult; batch, history and copy as code."""
