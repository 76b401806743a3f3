"""Stopping a process and everything it started: a Prefect worker starts each flow run in a process
group of its own, so signalling the worker's group alone leaves runs behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the worker starts flow runs in process groups of their own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop_process_tree(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process's group and the groups of its descendants; SIGKILL what is left after ``grace``."""
    if process.poll() is not None:
        return
    groups = {process.pid}
    if Path("/proc").is_dir():
        for pid in _descendants(process.pid):
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                pass
    groups.discard(os.getpgid(0))  # never our own group
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)
