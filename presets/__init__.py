"""The preset data files, shipped in the wheel as playground.presets (see core/presets.py)."""
