"""fac: a software factory supervisor.

Runs coding agents in tmux windows on their own git worktrees and lets only green work reach
`main` through a deterministic merge queue.
"""

__version__ = "0.1.0"
