"""``modelops logs NAME --env ENV [--follow] [--tail N]``: a deployment's server log.

For a local deployment the log is the file the local engine's server writes
(``<state_dir>/logs/<name>-<env>.log``, recorded as ``outputs.log`` in the ledger; every
server of the deployment appends to it). For a cluster or cloud target modelops holds no
log: the command prints the ``kubectl`` or ``aws`` command that shows it. Exit codes: 0,
or 2 when the deployment is unknown or its log file does not exist.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from reconciler.commands.options import EnvOption, console, get_config
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.state.ledger import Ledger, LedgerRecord

#: Seconds between two reads of a followed log file.
FOLLOW_POLL_S = 0.25
#: Bytes read per step when looking backwards for the last lines.
_BLOCK = 64 * 1024


def log_file(config: Config, record: LedgerRecord) -> Path:
    """The local server log of ``record``: ``outputs.log`` (repository-relative or
    absolute) when the ledger has it, else ``<state_dir>/logs/<name>-<env>.log``."""
    recorded = (record.outputs or {}).get("log")
    if recorded:
        path = Path(recorded)
        return path if path.is_absolute() else config.root / path
    return config.state_dir / "logs" / f"{record.key}.log"


def tail_bytes(fh: BinaryIO, lines: int) -> bytes:
    """The last ``lines`` lines of the open binary file ``fh`` (all when ``lines`` is 0
    or more than the file has), read backwards in blocks; leaves ``fh`` at its end."""
    fh.seek(0, 2)
    end = fh.tell()
    if lines <= 0:
        fh.seek(0)
        return fh.read()
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= lines:
        step = min(_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
    fh.seek(end)
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def follow(
    fh: BinaryIO,
    write: Callable[[bytes], None],
    stop: Callable[[], bool],
    poll_s: float = FOLLOW_POLL_S,
) -> None:
    """Write what is appended to ``fh`` (from its current offset) until ``stop()`` is
    true after a read that found nothing new. A file truncated under us (a new server
    started with an emptied log) is read again from its start."""
    while True:
        chunk = fh.read()
        if chunk:
            write(chunk)
            continue
        if stop():
            return
        here = fh.tell()
        fh.seek(0, 2)
        if fh.tell() < here:  # truncated
            fh.seek(0)
        else:
            fh.seek(here)
        time.sleep(poll_s)


def cluster_command(record: LedgerRecord, tail: int, follow_: bool) -> list[str] | None:
    """The argv that shows the logs of a deployment modelops does not run itself, or
    ``None`` when its platform has no log modelops knows of (edge devices).

    - kubernetes: ``kubectl logs`` over the pods labelled
      ``app.kubernetes.io/instance=<name>-<env>`` in the recorded namespace;
    - aws-sagemaker, aws-serverless: ``aws logs tail`` of the endpoint's CloudWatch
      group ``/aws/sagemaker/Endpoints/<endpoint_name>``.
    """
    outputs = record.outputs or {}
    if record.platform == "kubernetes":
        argv = [
            "kubectl",
            "logs",
            "--namespace",
            str(outputs.get("namespace") or "default"),
            "--selector",
            f"app.kubernetes.io/instance={record.key}",
            "--all-containers",
            "--prefix",
            f"--tail={tail if tail > 0 else -1}",
        ]
        return argv + (["--follow"] if follow_ else [])
    if record.platform in ("aws-sagemaker", "aws-serverless"):
        endpoint = str(outputs.get("endpoint_name") or record.key)
        argv = ["aws", "logs", "tail", f"/aws/sagemaker/Endpoints/{endpoint}"]
        if outputs.get("region"):
            argv += ["--region", str(outputs["region"])]
        return argv + (["--follow"] if follow_ else ["--since", "1h"])
    return None


def logs_cmd(
    name: Annotated[str, typer.Argument(help="Deployment name (metadata.name).")],
    env: EnvOption,
    follow_: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    tail: Annotated[
        int,
        typer.Option("--tail", "-n", min=0, help="Print the last N lines first (0: all)."),
    ] = 50,
) -> None:
    """Show the server log of deployment NAME in ENV.

    Local deployments: the log file the local server writes
    (<state_dir>/logs/NAME-ENV.log). Kubernetes and AWS targets: prints the kubectl or
    aws command that shows their logs (modelops keeps no copy).
    """
    config = get_config()
    record = Ledger.of(config).get(name, env)
    if record is None:
        raise ModelopsError(
            f"no deployment {name!r} recorded in environment {env!r}; "
            "`modelops status` lists the recorded ones"
        )
    if record.platform != "local":
        argv = cluster_command(record, tail, follow_)
        if argv is None:
            raise ModelopsError(
                f"{record.key} runs on {record.platform or 'an unknown platform'}: "
                "modelops has no log for it (edge devices keep their own)"
            )
        console.print(
            f"{record.key} runs on {record.platform}; its logs: {shlex.join(argv)}",
            markup=False,
        )
        return
    path = log_file(config, record)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, also when following is interrupted
    except FileNotFoundError:
        raise ModelopsError(
            f"{record.key}: no server log at {config.rel(path)} (not applied on this "
            "machine, or the state directory was cleaned)"
        ) from None
    with fh:
        _write(tail_bytes(fh, tail))
        if follow_:
            try:
                follow(fh, _write, stop=lambda: False)
            except KeyboardInterrupt:
                return


def _write(data: bytes) -> None:
    """Log bytes to stdout as they are (no Rich markup, no re-wrapping)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
    else:
        sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
