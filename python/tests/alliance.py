"""A local three-party alliance for the tests and the examples: ``confide init`` and one
``confide serve`` per party on 127.0.0.1 (alice and bob are the risk compute nodes, carol
the training dealer and the lender of the risk index), with small generated credit data."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

import confide

REPO = Path(__file__).resolve().parents[2]
PARTIES = ["alice", "bob", "carol"]


def confide_bin() -> str:
    """The `confide` binary: $CONFIDE_BIN, else the workspace's target/debug build."""
    b = os.environ.get("CONFIDE_BIN") or str(REPO / "target" / "debug" / "confide")
    if not Path(b).exists():
        raise RuntimeError(f"{b} not found: run `cargo build` first or set CONFIDE_BIN")
    return b


def free_base_port(n: int) -> int:
    """n consecutive free ports on loopback."""
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports on 127.0.0.1")


class Alliance:
    """Three daemons under ``dir``; ``party(name)`` opens a :class:`confide.Party`."""

    def __init__(self, dir: Optional[Path] = None) -> None:
        self._tmp = None if dir else tempfile.mkdtemp(prefix="confide-py-")
        self.dir = Path(dir or self._tmp)
        self.procs: Dict[str, subprocess.Popen] = {}
        base = free_base_port(len(PARTIES))
        subprocess.run(
            [confide_bin(), "init", "--dir", str(self.dir), "--parties", ",".join(PARTIES),
             "--base-port", str(base), "--dealer", "carol", "--compute", "alice,bob"],
            check=True, capture_output=True,
        )

    def config(self, party: str) -> Path:
        return self.dir / party / "party.toml"

    @property
    def genesis(self) -> Path:
        return self.dir / "genesis.json"

    def start(self, party: str) -> None:
        log = open(self.dir / f"{party}.log", "ab")
        self.procs[party] = subprocess.Popen(
            [confide_bin(), "serve", "--config", str(self.config(party))],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "info"},
        )

    def stop(self, party: str) -> None:
        p = self.procs.pop(party, None)
        if p is not None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def up(self, within: float = 30.0) -> "Alliance":
        for p in PARTIES:
            self.start(p)
        deadline = time.time() + within
        for p in PARTIES:
            while True:
                try:
                    st = confide.Party(self.config(p), progress=False).status()
                    if all(x["reachable"] for x in st["peers"]):
                        break
                except confide.ConfideError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"{p}'s daemon not healthy in {within} s: "
                                       + self.log(p)[-2000:])
                time.sleep(0.2)
        return self

    def log(self, party: str) -> str:
        f = self.dir / f"{party}.log"
        return f.read_text(errors="replace") if f.exists() else ""

    def party(self, name: str, progress: bool = False) -> confide.Party:
        return confide.Party(self.config(name), progress=progress)

    def down(self) -> None:
        for p in list(self.procs):
            self.stop(p)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def credit_tables(rows: int = 600, seed: int = 7):
    """Vertically split credit data from data/credit/credit_default_taiwan.csv: alice (a
    bank) has the label and repayment history, bob (a platform) bills and payments; the
    IDs overlap on about 80% of the rows."""
    src = pd.read_csv(REPO / "data" / "credit" / "credit_default_taiwan.csv", nrows=rows)
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:06d}" for i in range(len(src))])
    a_cols = ["LIMIT_BAL", "AGE", "PAY_0", "PAY_2", "PAY_3"]
    b_cols = ["BILL_AMT1", "BILL_AMT2", "PAY_AMT1", "PAY_AMT2", "PAY_AMT3"]
    alice = src[a_cols].copy()
    alice.insert(0, "default", src["label"])
    alice.insert(0, "customer_id", ids)
    keep_b = rng.random(len(src)) < 0.8
    bob = src.loc[keep_b, b_cols].copy()
    bob.insert(0, "customer_id", ids[keep_b])
    return alice, bob


def loans_table(party_index: int, n: int = 60) -> pd.DataFrame:
    """A lender's risk figures: applicants overlap between neighbouring lenders."""
    ids = [f"C{i:06d}" for i in range(party_index * n // 2, party_index * n // 2 + n)]
    h = np.array([(i * 7 + party_index * 13) % 97 for i in range(len(ids))])
    return pd.DataFrame({
        "customer_id": ids,
        "blacklisted": (h % 11 == 0).astype(int),
        "loans": 1 + h % 3,
        "amount": (1 + h) * 50_000,
        "overdue": h % 2,
    })


def register_data(parties: Dict[str, confide.Party]) -> Dict[str, List[str]]:
    """Declares the example datasets through Party.add_dataset."""
    alice, bob = credit_tables()
    a, b = parties["alice"], parties["bob"]
    a.add_dataset("credit", alice, id_column="customer_id",
                  allow={"psi": ["bob"], "train": ["bob"]})
    b.add_dataset("credit", bob, id_column="customer_id",
                  allow={"psi": ["alice"], "train": ["alice"]})
    parties["carol"].add_dataset("loans", loans_table(0), id_column="customer_id",
                                 allow={"risk": ["alice", "bob"]})
    return {"alice": ["credit"], "bob": ["credit"], "carol": ["loans"]}
