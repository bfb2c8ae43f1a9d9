"""What every package of the project shares and no package owns: the commands' exit codes.

A leaf package below ``isp`` and ``attiqa`` (which never import each other), so one definition
serves all of them.
"""
