"""Helpers that every stage of attiqa shares: colour transfer, files (cache, atomic writes, locks), devices.

attiqa never imports the project's other packages (``isp``, ``envs``, ...), so it keeps its own
copy of these few helpers; within attiqa each exists once.
"""
