"""Placeholder until the mirror lands (step 3)."""


def start(lab, root, port):
    raise NotImplementedError


def stop(lab):
    return None


def status(lab):
    return None
