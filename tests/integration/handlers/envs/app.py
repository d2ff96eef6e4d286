"""Integration-test fixture for test_envs (tests/integration/handlers/envs).

pid: {"pid": N}. hog: allocates event["mb"] MiB and touches every page (the memory limit must
stop it). close_pipes: closes stdout and stderr (the first time; a warm environment has them
closed already), then returns {"closed": true, "pid": N}.
"""
import os


def pid(event, context):
    return {"pid": os.getpid()}


def hog(event, context):
    chunks = []
    for _ in range(int(event.get("mb", 512))):
        b = bytearray(1024 * 1024)
        for i in range(0, len(b), 4096):
            b[i] = 1
        chunks.append(b)
    return {"allocated_mb": len(chunks)}


def close_pipes(event, context):
    for fd in (1, 2):
        try:
            os.close(fd)
        except OSError:
            pass  # closed by an earlier invocation of this environment
    return {"closed": True, "pid": os.getpid()}
