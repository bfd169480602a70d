"""placeholder"""
PRESETS = ()
