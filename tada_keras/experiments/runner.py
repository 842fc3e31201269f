"""Executes a plan: one ``python -m tada_keras.train`` subprocess per run.

A fresh process per run keeps runs independent (no graph, memory or RNG state leaks
between them; it inherits ``KERAS_BACKEND``) and makes an interruption cheap: the
training CLI resumes from its last checkpoint, and a run whose ``metrics.json`` exists
is skipped. Each run's full output goes to ``<model_dir>/train.log``; the console gets
one line when a run starts, one per phase, and one when it ends, with an ETA.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable

from tada_keras.experiments.plan import ROOT, PlannedRun
from tada_keras.training.phases import parse_phase_line

Launcher = Callable[[PlannedRun, Callable[[str], None]], int]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def train_command(run: PlannedRun) -> list[str]:
    return [sys.executable, "-m", "tada_keras.train", *run.args]


def launch_subprocess(run: PlannedRun, on_line: Callable[[str], None]) -> int:
    """Runs one training subprocess, teeing its output to ``train.log``; returns its exit
    code. Interrupting the harness stops the child too (it resumes next time)."""
    os.makedirs(run.model_dir, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(os.path.join(run.model_dir, "train.log"), "a") as log:
        log.write(f"$ {' '.join(train_command(run))}\n")
        proc = subprocess.Popen(train_command(run), cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for line in proc.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@dataclasses.dataclass
class Progress:
    """Training steps to go and the measured seconds per step, for the ETA."""

    total_steps: int
    done_steps: int = 0
    seconds: float = 0.0

    def add(self, steps: int, seconds: float) -> None:
        self.done_steps += steps
        self.seconds += seconds

    def eta(self) -> float | None:
        if not self.done_steps:
            return None
        return (self.total_steps - self.done_steps) * self.seconds / self.done_steps


@dataclasses.dataclass
class Outcome:
    ran: list[PlannedRun] = dataclasses.field(default_factory=list)
    skipped: list[PlannedRun] = dataclasses.field(default_factory=list)  # already finished
    failed: list[PlannedRun] = dataclasses.field(default_factory=list)
    blocked: list[PlannedRun] = dataclasses.field(default_factory=list)  # parent failed


def execute(runs: list[PlannedRun], launch: Launcher = launch_subprocess,
            log: Callable[[str], None] = print,
            clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Trains every unfinished run in order; a failed run does not stop the others (its
    dependants are skipped). Returns what happened to each run."""
    outcome = Outcome()
    todo = [r for r in runs if not r.done]
    outcome.skipped = [r for r in runs if r.done]
    progress = Progress(sum(r.steps for r in todo))
    log(f"{len(runs)} runs: {len(outcome.skipped)} finished before, {len(todo)} to train "
        f"({progress.total_steps} steps)")
    failed_dirs = set()
    for i, run in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {run.row.label} · seed {run.seed}"
        if run.parent in failed_dirs:
            log(f"{tag} · not started: the run it starts from failed ({run.parent})")
            outcome.blocked.append(run)
            failed_dirs.add(run.model_dir)
            continue
        phases = run.phase_steps
        log(f"{tag} · {run.steps} steps · started · ETA {format_duration(progress.eta())}")
        start = clock()

        def on_line(line, tag=tag, phases=phases, start=start):
            event = parse_phase_line(line)
            if event:
                phase, what = event
                state = {"started": f"{phases.get(phase, '?')} steps",
                         "skipped": "skipped", "done": "done before"}[what]
                log(f"{tag} · {phase} · {state} · {format_duration(clock() - start)}")

        code = launch(run, on_line)
        elapsed = clock() - start
        if code == 0 and run.local:
            progress.add(run.steps, elapsed)
            outcome.ran.append(run)
            if run.record:
                from tada_keras.experiments.records import write_record

                write_record(run.record, run.model_dir, list(run.args), elapsed)
            log(f"{tag} · done in {format_duration(elapsed)} · target "
                f"{_summary(run)} · ETA {format_duration(progress.eta())}")
        else:
            progress.total_steps -= run.steps
            outcome.failed.append(run)
            failed_dirs.add(run.model_dir)
            log(f"{tag} · FAILED (exit code {code}) after {format_duration(elapsed)}; "
                f"see {os.path.join(run.model_dir, 'train.log')}:\n" + _tail(run))
    return outcome


def _summary(run: PlannedRun) -> str:
    from tada_keras.experiments.aggregate import main_task_of
    from tada_keras.tasks import get_task

    metrics = run.metrics()
    return get_task(main_task_of(metrics)).headline(metrics["target_test"])


def _tail(run: PlannedRun, lines: int = 15) -> str:
    try:
        with open(os.path.join(run.model_dir, "train.log")) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
