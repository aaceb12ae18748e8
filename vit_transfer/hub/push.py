"""``push_run``: stage a trained run in its ecosystem's layout, write the card, upload it.

The folder that is uploaded is built locally first (``--dry-run DIR`` keeps it and stops there),
checked to hold no token, then sent with ``create_repo`` (+ ``create_branch`` for a new revision)
and one ``upload_folder`` commit. Server refusals become ``HubError``s naming the repo.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .card import build_model_card
from .errors import HubError, HubPermissionError
from ..runs.folder import RunFolder, read_run_folder
from .secrets import LOGIN_HINT, resolve_token, scrub
from .staging import StagedModel, stage

logger = logging.getLogger(__name__)

MAX_SCANNED_BYTES = 64 << 20  # files larger than this are weights: only their header can hold text


@dataclass
class PushResult:
    """What was (or, for a dry run, would be) uploaded, and where it went."""

    repo_id: str
    what: str  # "model" | "adapter" | "merged"
    ecosystem: str  # "hf" | "timm"
    library_name: str  # "transformers" | "timm" | "peft"
    files: list[str] = field(default_factory=list)
    revision: str | None = None
    private: bool = False
    dry_run: bool = False
    folder: Path | None = None  # the dry-run folder; None after an upload (staging is temporary)
    url: str | None = None  # the repo's page
    commit_url: str | None = None
    commit_oid: str | None = None

    def summary(self) -> str:
        head = f"{self.what} ({self.library_name}) -> {self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        where = f"written to {self.folder} (dry run, nothing uploaded)" if self.dry_run else (self.commit_url or self.url or "")
        return f"{head}: {len(self.files)} files, {where}"


def push_run(
    output_dir: "str | Path",
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    what: str = "auto",
    dry_run_dir: "str | Path | None" = None,
    token: str | None = None,
) -> PushResult:
    """Push a training run (or a saved model / adapter folder) to the Hub with a model card.

    ``what``: ``auto`` (the full or merged model when the run saved one, else the adapter),
    ``model``, ``adapter`` (peft layout) or ``merged`` (LoRA merged into the weights). With
    ``dry_run_dir`` the exact upload folder is written there and nothing touches the network.
    The token defaults to ``HF_TOKEN`` or the one stored by ``hf auth login``.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)  # the Hub's own rules, checked before any file is staged
        if not repo_id:
            raise HFValidationError("empty")
    except HFValidationError as exc:
        raise HubError(f"repo id {repo_id!r} is not valid: use USER/NAME (letters, digits, '-', '_', '.'; "
                       f"no '--' or '..'; at most 96 characters): {exc}") from exc
    run = read_run_folder(output_dir)

    if dry_run_dir is not None:
        dest = Path(dry_run_dir).expanduser()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise HubError(f"dry-run folder {dest} already exists and is not empty; pass a new or empty folder")
        staged = prepare_upload(run, what, dest, repo_id, token=token or _quiet_token(), link=False)
        logger.info("dry run: wrote %d files to %s", len(staged.files), dest)
        return _result(staged, repo_id, revision, private, dry_run=True, folder=dest)

    token = resolve_token(token)
    _check_online()
    from huggingface_hub import HfApi

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    with _explained_hub_errors(repo_id, revision, endpoint, token):
        if "/" not in repo_id:  # a bare name goes to the token owner's namespace
            repo_id = f"{api.whoami()['name']}/{repo_id}"
    with tempfile.TemporaryDirectory(prefix="vit-transfer-push-") as tmp:
        staged = prepare_upload(run, what, Path(tmp) / "upload", repo_id, token=token, link=True)
        message = commit_message or default_commit_message(staged, run)
        size = sum((staged.folder / f).stat().st_size for f in staged.files)
        logger.info("pushing %s: %d files (%.1f MB) to %s%s", staged.what, len(staged.files), size / 1e6,
                    repo_id, f"@{revision}" if revision else "")
        with _explained_hub_errors(repo_id, revision, endpoint, token):
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=str(staged.folder), revision=revision,
                commit_message=scrub(message, token), repo_type="model",
            )
    result = _result(staged, repo_id, revision, private, dry_run=False, folder=None)
    result.url = str(repo_url)
    result.commit_url = getattr(commit, "commit_url", None)
    result.commit_oid = getattr(commit, "oid", None)
    logger.info("pushed to %s", result.commit_url or result.url)
    return result


def prepare_upload(run: RunFolder, what: str, dest: Path, repo_id: str, token: str | None = None,
                   link: bool = False) -> StagedModel:
    """Stage the model files, write ``README.md``, and refuse if the token leaked into any file."""
    staged = stage(run, what, dest, link=link)
    card = build_model_card(run, staged, repo_id, token=token)
    (dest / "README.md").write_text(str(card), encoding="utf-8")
    staged.files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    if token:
        assert_token_absent(dest, token)
    return staged


def assert_token_absent(folder: Path, token: str) -> None:
    """Last line of defence: no staged file may contain the token's bytes."""
    needle = token.encode()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        with open(path, "rb") as fh:
            data = fh.read(MAX_SCANNED_BYTES)
        if needle in data:
            raise HubError(f"refusing to upload: {path.name} contains your Hub token; remove it from the run's files")


def default_commit_message(staged: StagedModel, run: RunFolder) -> str:
    text = f"Upload {staged.what} ({staged.library_name}) trained with vit-transfer"
    top1 = run.metrics.get("eval_top1")
    if isinstance(top1, (int, float)):
        text += f": eval top-1 {top1:.4f}"
    return text


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` when set (a mirror, an enterprise Hub, a local stand-in), else huggingface.co."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise HubError(
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so nothing can be uploaded: unset it to push, "
            "or pass --dry-run DIR to write the upload folder without network"
        )


def _quiet_token() -> str | None:
    """The user's token if there is one: a dry run does not need it, but scrubs it from the card."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def _result(staged: StagedModel, repo_id, revision, private, dry_run, folder) -> PushResult:
    return PushResult(
        repo_id=repo_id, what=staged.what, ecosystem=staged.ecosystem, library_name=staged.library_name,
        files=list(staged.files), revision=revision, private=private, dry_run=dry_run, folder=folder,
    )


@contextmanager
def _explained_hub_errors(repo_id: str, revision: str | None, endpoint: str, token: str):
    """Turn huggingface_hub / HTTP failures into HubErrors that say which repo and what to do."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        yield
    except OfflineModeIsEnabled as exc:
        raise HubError(f"offline mode is enabled ({exc}); unset HF_HUB_OFFLINE to push") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        server = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, token)
        if status in (401, 403) or isinstance(exc, RepositoryNotFoundError):
            what = "is invalid or expired" if status == 401 else "lacks write access to it"
            raise HubPermissionError(
                f"the Hub refused to write to {repo_id} (HTTP {status}): the token {what}. Push to your own "
                f"namespace or an organisation you can write to, with a write token: {LOGIN_HINT}. "
                f"Server said: {server}"
            ) from None
        where = f"{repo_id}@{revision}" if revision else repo_id
        raise HubError(f"the Hub at {endpoint} failed while pushing {where} (HTTP {status}): {server}") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2") or isinstance(exc, ConnectionError):
            raise HubError(f"cannot reach the Hub at {endpoint} ({scrub(str(exc), token)}); check the network "
                           "or HF_ENDPOINT") from None
        raise
