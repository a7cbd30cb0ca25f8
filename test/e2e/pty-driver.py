#!/usr/bin/env python3
"""Drives a command on a real pty, as a user at a terminal would.

usage: pty-driver.py ROWS COLS STEPS_JSON COMMAND...

STEPS is a list of {"expect": REGEX} (wait for output matching it, since the last match),
{"send": TEXT}, {"resize": [ROWS, COLS]} (TIOCSWINSZ on the master: the kernel sends SIGWINCH
to the terminal's foreground process group) and {"sleep": SECONDS}. Prints one JSON object:
the whole output, the command's exit status, and the step that timed out, if any.
"""
import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time

rows, cols = int(sys.argv[1]), int(sys.argv[2])
steps = json.loads(sys.argv[3])
argv = sys.argv[4:]


def set_size(fd, r, c):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))


pid, master = pty.fork()
if pid == 0:
    set_size(0, rows, cols)
    os.execvp(argv[0], argv)

output = b""
seen = 0
failed = None


def pump(timeout):
    global output
    r, _, _ = select.select([master], [], [], timeout)
    if not r:
        return True
    try:
        data = os.read(master, 65536)
    except OSError:
        return False
    if not data:
        return False
    output += data
    # Answer cursor-position queries as a terminal does: busybox's line editor asks at every
    # prompt and discards what is typed until the answer comes.
    for _ in range(data.count(b"\x1b[6n")):
        os.write(master, b"\x1b[1;1R")
    return True


for i, step in enumerate(steps):
    if "expect" in step:
        pattern = re.compile(step["expect"].encode())
        deadline = time.time() + step.get("timeout", 20)
        while True:
            m = pattern.search(output, seen)
            if m:
                seen = m.end()
                break
            if time.time() > deadline or not pump(0.1):
                failed = {"step": i, "expect": step["expect"]}
                break
        if failed:
            break
    elif "send" in step:
        os.write(master, step["send"].encode())
    elif "resize" in step:
        set_size(master, step["resize"][0], step["resize"][1])
    elif "sleep" in step:
        end = time.time() + step["sleep"]
        while time.time() < end:
            pump(0.05)

deadline = time.time() + 30
while time.time() < deadline and pump(0.2):
    pass
try:
    _, status = os.waitpid(pid, os.WNOHANG if failed else 0)
except ChildProcessError:
    status = 0
if failed:
    os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"output": output.decode("utf-8", "replace"), "code": code, "failed": failed}))
