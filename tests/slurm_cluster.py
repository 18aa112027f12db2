"""A throwaway single-node SLURM cluster on localhost, for the cluster-path test.

Needs root and Debian's `slurmctld slurmd slurm-client munge` (.ci/run installs them). The node has the
machine's CPUs and two fake GPUs (gres on /dev/null and /dev/zero) so that GPU-tagged rules schedule, two
at a time. State and logs
live in a temporary folder. The configuration must sit at the default /etc/slurm/slurm.conf: the SLURM
executor's job step drops SLURM_CONF before its inner `srun`. It is written only where no other
configuration exists and removed again by `stop()`, which also ends exactly the daemons `start()` started.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"
CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by the moe-rpo SLURM test; removed when it stops\n"


def available() -> str | None:
    """None when a cluster can be started here, else why not."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
               if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return f"SLURM/munge not installed (missing {missing}); apt-get install slurmctld slurmd slurm-client munge"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    for path in (CONF, CONF.parent / "gres.conf"):
        if path.exists() and not path.read_text().startswith(MARKER):
            return f"{path} belongs to a real SLURM installation; the test does not touch it"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _read_pid(path: Path, timeout: float = 30) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text().strip())
        time.sleep(0.2)
    raise RuntimeError(f"daemon did not write its pid file {path}")


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]  # NodeName must equal `hostname -s`
        self.conf = CONF
        self.pids: dict[str, int] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(MARKER + f"""\
ClusterName=localtest
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName={self.host} CPUs={os.cpu_count()} RealMemory={_memory_mb()} Gres=gpu:2 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (self.conf.parent / "gres.conf").write_text(MARKER + f"AutoDetect=off\nNodeName={self.host} Name=gpu File=/dev/null\n"
                                                          f"NodeName={self.host} Name=gpu File=/dev/zero\n")

    def start(self) -> None:
        self.write_config()
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", _binary("munged")], check=True)
            self.pids["munged"] = _read_pid(run_dir / "munged.pid")
        subprocess.run([_binary("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        self.pids["slurmctld"] = _read_pid(self.root / "slurmctld.pid")
        subprocess.run([_binary("slurmd"), "-f", str(self.conf)], check=True, env=self.env)
        self.pids["slurmd"] = _read_pid(self.root / "slurmd.pid")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env).stdout
            if "idle" in state or "mixed" in state:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node never became idle (sinfo: {state!r}); see {self.root}/log")

    def stop(self) -> None:
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + 15
            while time.time() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.2)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        for path in (self.conf, self.conf.parent / "gres.conf"):
            if path.exists() and path.read_text().startswith(MARKER):
                path.unlink()
