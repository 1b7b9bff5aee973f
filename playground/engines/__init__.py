"""Engines stream text under a constraint behind one small interface (base.py); they
import core and backends only, and never judge or time. `registry` picks one by flags."""
