"""The :class:`Party` handle: one party's own daemon, from its ``party.toml``."""

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import pandas as pd

from . import _native
from ._progress import JobProgress
from .errors import AuditError

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class PsiResult:
    """The outcome of a PSI job at this party."""

    #: The job's id.
    job_id: str
    #: The intersection's size, or None where this party may not learn it.
    size: Optional[int]
    #: The common IDs (column ``id``) where this party received them, else None.
    ids: Optional[pd.DataFrame]
    #: The one line ``confide psi`` prints.
    summary: str
    #: The job's JSON summary as the daemon reports it.
    result: Dict[str, Any] = field(repr=False)
    #: Where the intersection was written, if anywhere.
    output: Optional[Path] = None


@dataclass
class Model:
    """A trained model, as this party holds it."""

    #: The train job's id (what ``predict`` names the model by).
    job_id: str
    #: Intercept and weight of each feature (raw units) where the model was revealed to
    #: this party; None when it stays secret-shared (``keep_shared=True``).
    weights: Optional[pd.Series]
    #: Training metrics: rows, epochs, loss, AUCs … (the job summary's numbers).
    metrics: Dict[str, Any]
    #: The one line ``confide train`` prints.
    summary: str
    #: The job's JSON summary as the daemon reports it.
    result: Dict[str, Any] = field(repr=False)
    #: The model file this party received, if any.
    output: Optional[Path] = None


_METRICS = (
    "common_rows", "features", "epochs", "steps", "stop", "final_loss", "train_auc",
    "best_validation_auc", "best_epoch", "loss_per_epoch", "validation_auc_per_epoch",
    "positives", "trees", "depth", "elapsed_ms", "role", "resumed_from", "resumed_epochs",
    "resumed_trees",
)


class Party:
    """One party of an alliance, talking to its own daemon over the CLI's mutual TLS.

    >>> p = confide.Party("alliance/alice/party.toml")   # doctest: +SKIP
    >>> p.status()["peers"]                                # doctest: +SKIP

    ``progress`` shows a tqdm bar for every job (a widget in Jupyter, text in a terminal).
    Ctrl-C (KeyboardInterrupt) while a job runs cancels it at every party.
    """

    def __init__(self, config: PathLike, progress: bool = True) -> None:
        self._c = _native.Client(os.fspath(config))
        self.progress = progress

    def __repr__(self) -> str:
        return f"Party({self.name!r}, config={str(self.config)!r})"

    @property
    def name(self) -> str:
        """This party's name."""
        return self._c.name

    @property
    def config(self) -> Path:
        """The party.toml this handle was opened with."""
        return Path(self._c.config)

    @property
    def data_dir(self) -> Path:
        """The daemon's data directory (where ``add_dataset`` writes files)."""
        return Path(self._c.data_dir)

    # -- the daemon -------------------------------------------------------------------

    def status(self, peers: bool = True) -> Dict[str, Any]:
        """``confide status --json``: this daemon (party, version, jobs_running) and, with
        ``peers``, whether each peer is reachable."""
        return json.loads(self._c.status(not peers))

    def jobs(self) -> pd.DataFrame:
        """The jobs the daemon knows: job_id, kind, state, initiator, parties, error,
        started, finished."""
        rows = json.loads(self._c.jobs())
        df = pd.DataFrame(
            rows,
            columns=["job_id", "kind", "state", "initiator", "parties", "error",
                     "started_unix_ms", "finished_unix_ms"],
        )
        df["started"] = pd.to_datetime(df.pop("started_unix_ms"), unit="ms", utc=True)
        fin = df.pop("finished_unix_ms")
        df["finished"] = pd.to_datetime(fin.where(fin > 0), unit="ms", utc=True)
        return df

    def cancel(self, job: Union[str, "Model", PsiResult]) -> bool:
        """Cancels a job at every party; False if it had already ended."""
        return self._c.cancel(_job_id(job))

    # -- jobs ---------------------------------------------------------------------------

    def _submit(self, kind: str, args: List[str]):
        bar = JobProgress(kind, self.progress)
        try:
            job, result, summary = self._c.submit(args, bar)
        finally:
            bar.close()
        return job, json.loads(result), summary

    def psi(
        self,
        dataset: str,
        peers: Sequence[str],
        output: Optional[PathLike] = None,
        size_only: bool = False,
        to_all: bool = False,
        protocol: Optional[str] = None,
        resume: Optional[str] = None,
    ) -> PsiResult:
        """Private set intersection of this party's ``dataset`` with ``peers``
        (``"PARTY:DATASET"``). Without ``output`` the intersection goes to a file under
        the data directory; ``size_only`` learns only its size. ``protocol`` is
        ``"kkrt"`` (the default for two parties unless ``size_only``) or ``"ecdh"``
        (any number of parties); ``result.result["protocol"]`` names the one used.
        ``resume`` is the id of a job cut off by a failure: the job continues from the
        checkpoints its parties kept (the other arguments must be that job's)."""
        args = ["psi", "--dataset", dataset]
        for p in peers:
            args += ["--peer", p]
        out = None
        if not size_only:
            out = Path(output) if output is not None else self._result_path("psi", ".csv")
            args += ["--output", os.fspath(out)]
        else:
            args += ["--size-only"]
        if to_all:
            args += ["--to-all"]
        if protocol is not None:
            args += ["--protocol", protocol]
        if resume is not None:
            args += ["--resume", resume]
        job, r, summary = self._submit("psi", args)
        written = r.get("output")
        ids = pd.read_csv(written, dtype=str) if written else None
        return PsiResult(job, r.get("intersection_size"), ids, summary, r,
                         Path(written) if written else None)

    def train(
        self,
        dataset: str,
        peer: str,
        label: str,
        model: str = "lr",
        output: Optional[PathLike] = None,
        **params: Any,
    ) -> Model:
        """Trains ``model`` ("lr" or "gbdt") on this party's ``dataset`` (holding
        ``label``) joined with ``peer`` (``"PARTY:DATASET"``), the configured dealer dealing.

        ``params`` are ``confide train``'s flags with ``_`` for ``-``: ``epochs=20``,
        ``learning_rate=0.1``, ``optimizer="adam"``, ``validation=0.2``, ``C=1.0``,
        ``keep_shared=True`` (keep the model secret-shared for :meth:`predict`) …;
        ``resume="JOB"`` continues a training job of either model cut off by a failure
        from its checkpoints (per epoch, or per tree for "gbdt"), with the same params."""
        out = Path(output) if output is not None else self._result_path("model", ".json")
        args = ["train", "--dataset", dataset, "--peer", peer, "--label", label,
                "--model", model, "--output", os.fspath(out)]
        args += _flags(params)
        job, r, summary = self._submit("train", args)
        written = r.get("output")
        weights = None
        if written and model == "lr":
            m = json.loads(Path(written).read_text())
            weights = pd.Series({"intercept": m["intercept"], **m["weights"]}, name="weight")
        metrics = {k: r[k] for k in _METRICS if r.get(k) is not None}
        return Model(job, weights, metrics, summary, r, Path(written) if written else None)

    def predict(
        self,
        model: Union[str, Model],
        dataset: str,
        peer: str,
        output: Optional[PathLike] = None,
    ) -> pd.DataFrame:
        """Scores this party's ``dataset`` with a secret-shared ``model`` (trained with
        ``keep_shared=True``) jointly with ``peer`` (``"PARTY:DATASET"``); the scores
        (columns ``id``, ``score``) come back to this party only."""
        out = Path(output) if output is not None else self._result_path("scores", ".csv")
        args = ["predict", "--model", _job_id(model), "--dataset", dataset,
                "--peer", peer, "--output", os.fspath(out)]
        _, r, _ = self._submit("predict", args)
        return pd.read_csv(r.get("output") or out, dtype={"id": str})

    def risk_ingest(self, dataset: str) -> Dict[str, Any]:
        """Contributes ``dataset`` to the alliance's risk index (replacing any earlier
        contribution of this party); returns the ingest summary."""
        job, r, summary = self._submit("risk-ingest", ["risk", "ingest", "--dataset", dataset])
        r.setdefault("job_id", job)
        r["summary"] = summary
        return r

    def risk_query(self, ids: Union[str, Iterable[str]]) -> pd.DataFrame:
        """Asks the alliance about applicants: one row per ID with blacklisted, loans,
        amount, overdue and queried_by."""
        ids = [ids] if isinstance(ids, str) else [str(i).strip() for i in ids]
        rows = self._c.risk_query(ids)
        df = pd.DataFrame(rows, columns=["blacklisted", "loans", "amount", "overdue",
                                         "queried_by"], dtype="int64")
        df.insert(0, "id", ids)
        return df

    # -- audit --------------------------------------------------------------------------

    def audit_log(self, summary: bool = False) -> pd.DataFrame:
        """This party's copy of the audit log: one row per entry (index, timestamp,
        member, kind, job_id, served_by, fingerprint); with ``summary``, per member the
        jobs started and served."""
        v = json.loads(self._c.audit_log(summary))
        if summary:
            return pd.DataFrame.from_dict(v, orient="index").rename_axis("member").reset_index()
        df = pd.DataFrame(v.get("entries", []))
        if "timestamp_ms" in df:
            df["timestamp"] = pd.to_datetime(df.pop("timestamp_ms"), unit="ms", utc=True)
        df.attrs["size"] = v.get("size")
        df.attrs["final_size"] = v.get("final_size")
        return df

    def audit_verify(self) -> str:
        """The daemon's verification of its whole copy of the log: the report, or
        :class:`AuditError` if it fails."""
        ok, report = self._c.audit_verify()
        if not ok:
            raise AuditError(f"{self.name}: audit log verification FAILED: {report}")
        return report

    def prove(self, job: Union[str, Model, PsiResult], output: Optional[PathLike] = None,
              within: float = 15.0) -> str:
        """The proof bundle (JSON text) that ``job`` is in the cosigned audit log, waiting
        up to ``within`` seconds for its checkpoint; also written to ``output`` if given.
        Check it anywhere with :func:`confide.check`."""
        bundle = self._c.prove(_job_id(job), within)
        if output is not None:
            Path(output).write_text(bundle)
        return bundle

    # -- datasets -----------------------------------------------------------------------

    def add_dataset(
        self,
        name: str,
        data: Union[pd.DataFrame, PathLike],
        id_column: str,
        allow: Optional[Dict[str, Sequence[str]]] = None,
    ) -> Path:
        """Writes ``data`` (a DataFrame, or a CSV file to copy) to
        ``<data_dir>/datasets/<name>.csv`` and registers it with the daemon (Control
        ``AddDataset``) with the policy ``allow`` (job kind → parties, e.g.
        ``{"psi": ["bob"]}``). The daemon appends the dataset to its ``party.toml``, so a
        restarted daemon has it too; the policy change is logged. Returns the CSV's path."""
        dest_dir = self.data_dir / "datasets"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{name}.csv"
        if dest.exists():
            from .errors import InvalidRequestError
            raise InvalidRequestError(f"dataset `{name}`: {dest} already exists")
        if isinstance(data, pd.DataFrame):
            data.to_csv(dest, index=False)
        else:
            shutil.copyfile(os.fspath(data), dest)
        grants = [(k, list(v)) for k, v in (allow or {}).items()]
        try:
            self._c.add_dataset(name, str(dest.resolve()), id_column, grants)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest

    def _result_path(self, what: str, ext: str) -> Path:
        d = self.data_dir / "python"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{what}-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}{ext}"


@dataclass
class ProofCheck:
    """A proof bundle that passed the offline check."""

    summary: str
    index: int
    tree_size: int
    kind: str
    job_id: str
    member: str
    cosigners: List[str]


def check(proof: Union[str, PathLike], genesis: PathLike) -> ProofCheck:
    """``confide audit check``: verifies a proof bundle (a file, or the JSON text
    :meth:`Party.prove` returns) against the alliance's genesis file, offline. Raises
    :class:`ProofError` if it does not hold."""
    if isinstance(proof, str) and proof.lstrip().startswith("{"):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(proof)
        try:
            return ProofCheck(*_native.check(f.name, os.fspath(genesis)))
        finally:
            os.unlink(f.name)
    return ProofCheck(*_native.check(os.fspath(proof), os.fspath(genesis)))


def _job_id(job: Any) -> str:
    return job if isinstance(job, str) else job.job_id


def _flags(params: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    for k, v in params.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        else:
            out += [flag, str(v)]
    return out
