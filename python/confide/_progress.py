"""A tqdm progress bar fed by a job's event stream (``tqdm.auto``: a widget in Jupyter,
text in a terminal)."""

from typing import Any, Optional


class JobProgress:
    """Turns the daemon's JobEvents (state, stage, done, total, message, job id) into a
    tqdm bar: one bar per stage, its length the stage's total."""

    def __init__(self, kind: str, enabled: bool = True) -> None:
        self.kind = kind
        self.enabled = enabled
        self.job_id = ""
        self.events = 0
        self.stages: list = []
        self._bar: Optional[Any] = None
        self._stage: Optional[str] = None

    def __call__(
        self, state: str, stage: str, done: int, total: int, message: str, job_id: str
    ) -> None:
        self.job_id = job_id
        self.events += 1
        if stage and (not self.stages or self.stages[-1] != stage):
            self.stages.append(stage)
        if not self.enabled or state in ("succeeded", "failed", "cancelled"):
            return
        if self._bar is None or stage != self._stage:
            self.close()
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total or None,
                desc=f"{self.kind} {job_id} {stage}",
                leave=False,
            )
            self._stage = stage
        bar = self._bar
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
