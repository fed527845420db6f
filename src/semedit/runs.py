"""Run folders that cannot be mixed up: safe names, one process at a time, resume only with the same settings.

A run folder (``run.output_dir/run.name`` for training and inversion, ``<hair run>/eval-identity-<hash>``
for eval-identity) holds:

- ``config.yaml``: the settings that made its contents. Written once, when the folder is new, and never
  rewritten: a resumed run appends to ``resumes.yaml`` instead (time, host, pid, command, changed keys);
- ``.lock``: an exclusive ``flock`` held by the one process that writes the folder (it names that process).
  The kernel drops the lock when the process ends, however it ends, so a crash leaves no stale lock;
- the job's outputs (checkpoints, W&B run, images, shards).

Opening an existing folder resumes it only when every result-affecting setting equals the stored one;
``RESUME_SAFE_KEYS`` below is the one list of keys that may differ. Otherwise the run stops with the diff,
and ``run.resume=never`` (the old contents move to ``replaced-<time>/`` inside the folder) or a new
``run.name`` starts over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import socket
import sys
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

from semedit.config import to_yaml, validate_run_name
from semedit.errors import RunFolderError
from semedit.files import write_atomically

__all__ = ["RUN_LOCK_ENV", "RESUME_SAFE_KEYS", "RESUME_RAISABLE_KEYS", "LOCK_FILE", "HISTORY_FILE",
           "validate_run_name", "RunLock", "RunFolder", "open_run_folder", "config_differences"]

# Set by the process that holds a folder's lock to that folder: the processes it starts (Lightning's DDP
# launcher re-runs the command line) inherit it and write into the folder without taking the lock again.
RUN_LOCK_ENV = "SEMEDIT_RUN_LOCK"
LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "resumes.yaml"

# The config keys that may differ between a run folder's config.yaml and the run that resumes it, because
# they cannot change what the run computes (fnmatch patterns over dotted keys; semedit's choice, kept
# conservative). Everything else must be equal. Deliberately NOT here:
# - trainer.devices / num_nodes / strategy / accelerator / precision: under DDP the world size changes the
#   global batch and the data each rank draws, and the device or precision changes the numbers;
# - logger.log_images_every_n_steps: logging image grids runs the generator during training;
# - trainer.val_check_interval / limit_val_batches / check_val_every_n_epoch: validation draws samples
#   between training steps.
RESUME_SAFE_KEYS: dict[str, str] = {
    "run.resume": "how to resume, not what",
    "run.name": "where the folder is, not what it holds",
    "run.output_dir": "where the folder is, not what it holds",
    "run.threads": "CPU threads: speed only",
    "threads": "CPU threads: speed only (eval-identity)",
    "trainer.log_every_n_steps": "how often metrics are logged",
    "trainer.enable_progress_bar": "console output only",
    "logger.wandb": "whether metrics are logged",
    "logger.project": "where metrics are logged",
    "logger.entity": "where metrics are logged",
    "logger.mode": "where metrics are logged",
    "logger.group": "where metrics are logged",
    "logger.tags": "labels of the logged run",
    "data.num_workers": "loading processes: speed only (inversion reads files in a fixed order)",
    "data.max_images": "inversion: how many of the inputs; each image's result does not depend on it",
    "output_dir": "eval-identity: where the folder is",
    "gallery_dir": "eval-identity: where the gallery shards are (their own fingerprint guards them)",
}
# Per job, keys that are safe for that job only.
RESUME_SAFE_KEYS_BY_JOB: dict[str, dict[str, str]] = {
    # eval-identity's work items are whole shards, each computed by one process: the number of processes
    # decides who computes a shard, not its numbers.
    "eval-identity": {"trainer.devices": "who computes each shard", "trainer.num_nodes": "who computes each shard",
                      "trainer.strategy": "who computes each shard"},
    # eval-hair's too (its batches and Fréchet blocks start at global multiples of their size).
    "eval-hair": {"trainer.devices": "who computes each shard", "trainer.num_nodes": "who computes each shard",
                  "trainer.strategy": "who computes each shard", "part": "who computes each shard",
                  "phase": "which shards are computed now", "retrieval_config": "where the retrieval result "
                  "shown beside the table is read from"},
}
# Keys that may only be raised (or set to -1/null, "no limit"): training continues further, the steps
# already taken are unchanged.
RESUME_RAISABLE_KEYS = ("trainer.max_steps", "trainer.max_epochs")


# ----------------------------------------------------------------------------------------------------
# The lock.


_COMMAND: list[str] | None = None  # the `semedit ...` command this process runs (set by the CLI)


def set_command_line(argv: list[str]) -> None:
    """Record the command for the lock file and resumes.yaml (``main(argv)`` may differ from sys.argv)."""
    global _COMMAND
    _COMMAND = [str(a) for a in argv]


def _command_line() -> str:
    if _COMMAND is not None:
        return shlex.join(_COMMAND)
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<run>/.lock``; the file names its holder.

    Re-entrant within one process (eval-inversion opens row folders inside its own). ``flock`` locks belong
    to the open file, so the lock ends with the process: no stale lock survives a crash or SIGKILL.
    """

    _held: dict[str, list] = {}  # resolved lock path -> [fd, count] in this process

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir).resolve() / LOCK_FILE
        self.key = str(self.path)

    def acquire(self) -> RunLock:
        held = RunLock._held.get(self.key)
        if held is not None:
            held[1] += 1
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            try:
                info = json.loads(holder)
                who = (f"pid {info.get('pid')} on {info.get('host')} (started {info.get('time')}: "
                       f"{info.get('command')})")
            except ValueError:
                who = "another process"
            raise RunFolderError(
                f"run folder {self.path.parent} is in use by {who}. Two runs cannot share a folder: wait for it "
                "to finish, or give this run another run.name") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "command": _command_line()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        RunLock._held[self.key] = [fd, 1]
        return self

    def release(self) -> None:
        held = RunLock._held.get(self.key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del RunLock._held[self.key]
            with contextlib.suppress(OSError):
                fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])


# ----------------------------------------------------------------------------------------------------
# Comparing configs.


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        if not obj and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: obj}


def _unlimited(value) -> bool:
    return value is None or value == -1


def _raised(old, new) -> bool:
    if _unlimited(new):
        return True
    return not _unlimited(old) and isinstance(new, (int, float)) and isinstance(old, (int, float)) and new >= old


def safe_keys(job: str) -> dict[str, str]:
    return {**RESUME_SAFE_KEYS, **RESUME_SAFE_KEYS_BY_JOB.get(job, {})}


def config_differences(stored: dict, current: dict, job: str) -> tuple[list[str], dict[str, list]]:
    """(refused, allowed): the keys that differ, as 'key: stored -> now' lines, and the harmless changes."""
    old, new = _flatten(stored), _flatten(current)
    safe = safe_keys(job)
    refused, allowed = [], {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if a == b:
            continue
        if any(fnmatch(key, pattern) for pattern in safe):
            allowed[key] = [a, b]
        elif key in RESUME_RAISABLE_KEYS and _raised(a, b):
            allowed[key] = [a, b]
        elif key in RESUME_RAISABLE_KEYS:
            refused.append(f"{key}: {a} -> {b} (may only be raised)")
        else:
            refused.append(f"{key}: {a} -> {b}")
    return refused, allowed


def _present(patterns, config: dict) -> list[str]:
    keys = _flatten(config)
    return sorted(p for p in patterns if any(fnmatch(k, p) for k in keys))


def _config_dict(config: Any) -> dict:
    # The same YAML text on both sides, so that numbers and lists compare as they are written.
    return yaml.safe_load(to_yaml(config)) or {}


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _has_checkpoints(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*.ckpt")) or any(run_dir.glob("hpc_ckpt_*.ckpt"))


# ----------------------------------------------------------------------------------------------------
# Opening a folder.


class RunFolder:
    """An opened run folder; ``keep()`` marks that work has started (before it, a failure removes a new folder)."""

    def __init__(self, path: Path, lead: bool, created: bool, resumed: bool):
        self.path, self.lead, self.created, self.resumed = path, lead, created, resumed
        self.kept = False
        self.pending_config: str | None = None  # config.yaml text, written when the work starts
        # The resumes.yaml entry of a resume, written when the work starts; the job adds what it resumes
        # from (e.g. "checkpoint") before that.
        self.resume_entry: dict | None = None

    def keep(self) -> None:
        """The work starts: write config.yaml (a folder new to this config) or the resume's entry in
        resumes.yaml, and keep the folder on failure."""
        self.kept = True
        if self.lead and self.pending_config is not None:
            text = self.pending_config
            write_atomically(self.path / CONFIG_FILE, lambda tmp: tmp.write_text(text))
            self.pending_config = None
        if self.resume_entry is not None:
            self.record_resume(**self.resume_entry)
            self.resume_entry = None

    def record_resume(self, **entry) -> None:
        """Append an entry to ``resumes.yaml`` (lead process only)."""
        if not self.lead:
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
                 "pid": os.getpid(), "command": _command_line(), **entry}
        with open(self.path / HISTORY_FILE, "a") as f:
            f.write(yaml.safe_dump([entry], sort_keys=False, default_flow_style=False, width=1_000_000))


def _replace_old_run(run_dir: Path) -> Path | None:
    """run.resume=never on a used folder: move its contents into ``replaced-<time>/`` (nothing is deleted)."""
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE and not p.name.startswith("replaced-")]
    if not entries:
        return None
    target = run_dir / f"replaced-{_utc_stamp()}"
    target.mkdir()
    for p in entries:
        os.replace(p, target / p.name)
    return target


@contextlib.contextmanager
def open_run_folder(run_dir: str | Path, job: str, config: Any, resume: str = "auto", lead: bool = True,
                    remedy: str | None = None):
    """Lock (lead process), check and prepare ``run_dir`` for ``config``; yields a :class:`RunFolder`.

    - new folder: created, and ``config.yaml`` written by ``keep()`` when the work starts; a failure before
      that removes the folder again (a rejected config leaves nothing behind);
    - existing folder, ``resume`` not "never": its config.yaml must agree with ``config`` up to
      ``RESUME_SAFE_KEYS`` (else RunFolderError with the diff); config.yaml stays as it is;
    - existing folder, ``resume == "never"``: the old contents move to ``replaced-<time>/``, then as new.

    Processes that are not the lead (other DDP ranks, processes started by the lock holder) only check.
    ``remedy`` replaces the advice of the changed-settings error (jobs without a ``run`` section).
    """
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    lead = lead and os.environ.get(RUN_LOCK_ENV) != key
    created = False
    lock = None
    previous_env = os.environ.get(RUN_LOCK_ENV)
    if lead:
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(f"cannot create run folder {run_dir}: {err.strerror}") from None
        lock = RunLock(run_dir).acquire()
        os.environ[RUN_LOCK_ENV] = key
    folder = RunFolder(run_dir, lead, created, resumed=False)
    try:
        _prepare(folder, job, config, resume, remedy)
        yield folder
    except BaseException:
        if lead and created and not folder.kept:
            shutil.rmtree(run_dir, ignore_errors=True)  # a rejected run leaves no folder behind
        raise
    finally:
        if lock is not None:
            lock.release()
            if previous_env is None:
                os.environ.pop(RUN_LOCK_ENV, None)
            else:
                os.environ[RUN_LOCK_ENV] = previous_env


def _prepare(folder: RunFolder, job: str, config: Any, resume: str, remedy: str | None = None) -> None:
    run_dir = folder.path
    stored_path = run_dir / CONFIG_FILE
    current = _config_dict(config)
    if resume == "never":
        if folder.lead:
            moved = _replace_old_run(run_dir)
            if moved is not None:
                print(f"run.resume=never: the previous contents of {run_dir} are now in {moved}", flush=True)
            folder.pending_config = to_yaml(config)
        return
    if not stored_path.is_file():
        if _has_checkpoints(run_dir):
            raise RunFolderError(
                f"run folder {run_dir} holds checkpoints but no {CONFIG_FILE}, so nothing says which settings made "
                "them; start over with run.resume=never (they are kept in replaced-<time>/) or choose another "
                "run.name")
        folder.pending_config = to_yaml(config)
        return
    try:
        stored = yaml.safe_load(stored_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RunFolderError(f"cannot read {stored_path} ({err}); choose another run.name or start over with "
                             "run.resume=never") from None
    refused, allowed = config_differences(stored, current, job)
    if refused:
        raise RunFolderError(
            f"run folder {run_dir} was made with other settings, and resuming it would mix two configurations: "
            + "; ".join(refused) + f" ({CONFIG_FILE} -> now). "
            + (remedy or "Start over in this folder with run.resume=never (the old run moves to replaced-<time>/ "
               "inside it) or choose a new run.name.")
            + " Keys that may differ on resume: " + ", ".join(_present(safe_keys(job), current)) + "; "
            + ", ".join(_present(RESUME_RAISABLE_KEYS, current)) + " (raised only)")
    folder.resumed = True
    folder.resume_entry = {"changed": {k: v for k, v in allowed.items()}}
