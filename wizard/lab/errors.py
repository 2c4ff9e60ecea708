"""The one exception the lab raises: its message tells the user what to do."""


class LabError(RuntimeError):
    pass
