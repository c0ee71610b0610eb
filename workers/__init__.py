"""The control plane: the gandalf CLI, and (to come) the supervisor and its workers."""
