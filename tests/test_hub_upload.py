"""push against a local stand-in Hub (127.0.0.1): the calls huggingface_hub makes, the files, the token's fate."""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import torch
import yaml

from vit_transfer import load_vit
from vit_transfer.hub import HubAuthError, HubPermissionError, push_run

TOKEN = "hf_" + "Tk9" * 12  # what HF_TOKEN holds in these tests
STORED_TOKEN = "hf_" + "St0red" * 6  # what `hf auth login` wrote to the token file


class StandInHub:
    """Records every request; answers the endpoints create_repo / upload_folder / create_branch use."""

    def __init__(self):
        self.requests: list[dict] = []
        self.refuse_status: int | None = None  # answer repo creation / lookup with 401 or 403
        self.committed: dict[str, bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def calls(self, method: str, fragment: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and fragment in r["path"]]

    @property
    def api_requests(self) -> list[dict]:
        """The push's own requests (huggingface_hub also asks, unauthenticated, for its agent registry)."""
        return [r for r in self.requests if r["path"] != "/api/agent-harnesses"]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def _route(self, method: str) -> None:
                path = urlsplit(self.path).path
                body = self._body()
                hub.requests.append({"method": method, "path": path, "query": urlsplit(self.path).query,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                parts = path.strip("/").split("/")
                if path == "/api/whoami-v2":
                    return self._send(200, {"name": "tester", "type": "user", "auth": {"accessToken": {"role": "write"}}})
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    if hub.refuse_status:
                        return self._send(hub.refuse_status, {"error": "You don't have the rights to create a model under this namespace"})
                    data = json.loads(body)
                    return self._send(200, {"url": f"{hub.url}/{data['organization']}/{data['name']}"})
                if parts[:2] == ["api", "models"] and len(parts) >= 5:
                    repo, action = "/".join(parts[2:4]), parts[4]
                    if hub.refuse_status:
                        return self._send(hub.refuse_status, {"error": "Forbidden"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]})
                    if action == "commit":
                        for line in body.splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                hub.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        return self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'c' * 40}", "commitOid": "c" * 40})
                    if action == "branch":
                        return self._send(200, {})
                if parts[:2] == ["api", "models"] and len(parts) == 4 and method == "GET":
                    if hub.refuse_status:
                        return self._send(hub.refuse_status, {"error": "Forbidden"})
                    return self._send(200, {"id": "/".join(parts[2:4]), "sha": "0" * 40, "private": False})
                return self._send(404, {"error": f"stand-in hub has no route {method} {path}"})

        return Handler


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in server, with huggingface_hub pointed at it and allowed online (conftest sets offline)."""
    from huggingface_hub import constants

    server = StandInHub()
    server.thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)  # read at import time by some helpers
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, hf_vit_dir):
    """A finished HF run whose recipe and command line carry the token by mistake."""
    run = tmp_path_factory.mktemp("run")
    model = load_vit(str(hf_vit_dir), image_size=48, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_(0, 0.5)
    model.save(run / "model")
    (run / "metrics.json").write_text(json.dumps({"eval_top1": 0.9, "eval_top5": 1.0, "steps": 10}))
    (run / "recipe.yaml").write_text(yaml.safe_dump({"train": {"steps": 10, "push_to_hub": True},
                                                     "hub": {"token": TOKEN, "note": f"pushed with {TOKEN}"}}))
    (run / "run_info.json").write_text(json.dumps({
        "base_model": "google/vit-base-patch16-224-in21k", "ecosystem": "hf", "image_size": [48, 48],
        "original_image_size": [32, 32], "patch_size": [8, 8], "num_labels": 3,
        "id2label": {"0": "a", "1": "b", "2": "c"}, "dataset": "beans", "method": "full",
        "command": f"HF_TOKEN={TOKEN} vit-transfer train --recipe recipe.yaml"}))
    return run


def create_request(call: dict) -> dict:
    """The create-repo body; huggingface_hub < 1.33 sends ``private: bool`` where later ones send ``visibility``."""
    body = json.loads(call["body"])
    if "private" in body:
        body["visibility"] = "private" if body.pop("private") else "public"
    return body


def test_push_creates_private_repo_branch_and_commits_every_file(hub, run_dir, tmp_path, monkeypatch, caplog, capsys):
    from huggingface_hub import ModelCard

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    result = push_run(run_dir, "tester/tiny-vit", private=True, revision="exp-1", commit_message="first push")

    create = hub.calls("POST", "/api/repos/create")
    assert len(create) == 1
    assert create_request(create[0]) == {"name": "tiny-vit", "organization": "tester", "visibility": "private", "type": "model"}
    assert len(hub.calls("POST", "/api/models/tester/tiny-vit/branch/exp-1")) == 1
    commits = hub.calls("POST", "/api/models/tester/tiny-vit/commit/exp-1")
    assert len(commits) == 1 and not hub.calls("POST", "/commit/main")
    header = json.loads(commits[0]["body"].splitlines()[0])
    assert header == {"key": "header", "value": {"summary": "first push", "description": ""}}

    # exactly the dry-run folder went up, byte for byte
    dry = push_run(run_dir, "tester/tiny-vit", dry_run_dir=tmp_path / "dry")
    assert sorted(hub.committed) == result.files == dry.files == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    for name in dry.files:
        assert hub.committed[name] == (tmp_path / "dry" / name).read_bytes(), name
    assert hub.committed["model.safetensors"] == (run_dir / "model" / "model.safetensors").read_bytes()
    assert result.commit_oid == "c" * 40 and result.url.endswith("/tester/tiny-vit") and result.private

    # the card on the "Hub" parses and carries the metrics
    (tmp_path / "README.md").write_bytes(hub.committed["README.md"])
    card = ModelCard.load(tmp_path / "README.md")
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {"Top-1 accuracy": 0.9, "Top-5 accuracy": 1.0}
    assert card.data.base_model == "google/vit-base-patch16-224-in21k" and card.data.datasets == ["beans"]

    # the token travelled only in the Authorization header
    assert {r["path"] for r in hub.api_requests} == {  # (huggingface_hub < 1.33 validates the card twice)
        "/api/repos/create", "/api/models/tester/tiny-vit/branch/exp-1", "/api/validate-yaml",
        "/api/models/tester/tiny-vit/preupload/exp-1", "/api/models/tester/tiny-vit/commit/exp-1"}
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in hub.api_requests)
    needle = TOKEN.encode()
    assert all(needle not in r["body"] for r in hub.requests)
    assert all(needle not in content for content in hub.committed.values())
    assert all(needle not in p.read_bytes() for p in (tmp_path / "dry").iterdir())
    captured = capsys.readouterr()
    assert caplog.records and TOKEN not in caplog.text and TOKEN not in captured.out + captured.err


def test_stored_login_token_is_used_and_bare_name_goes_to_own_namespace(hub, run_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    token_file = tmp_path / "login" / "token"
    token_file.parent.mkdir()
    token_file.write_text(STORED_TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    result = push_run(run_dir, "tiny-vit")
    assert result.repo_id == "tester/tiny-vit" and result.revision is None
    assert len(hub.calls("GET", "/api/whoami-v2")) == 1
    assert create_request(hub.calls("POST", "/api/repos/create")[0]) == {
        "name": "tiny-vit", "organization": "tester", "visibility": "public", "type": "model"}
    assert not hub.calls("POST", "/branch/")  # no revision: no branch created, commit to main
    assert len(hub.calls("POST", "/api/models/tester/tiny-vit/commit/main")) == 1
    assert {r["headers"].get("authorization") for r in hub.api_requests} == {f"Bearer {STORED_TOKEN}"}
    assert "tester/tiny-vit" in hub.committed["README.md"].decode()


def test_missing_token_says_how_to_log_in(hub, run_dir):
    with pytest.raises(HubAuthError) as info:
        push_run(run_dir, "tester/tiny-vit")
    assert "hf auth login" in str(info.value) and "HF_TOKEN" in str(info.value)
    assert hub.api_requests == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_names_the_repo(hub, run_dir, monkeypatch, status):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.refuse_status = status
    with pytest.raises(HubPermissionError) as info:
        push_run(run_dir, "someone-else/their-model", private=True)
    message = str(info.value)
    assert "someone-else/their-model" in message and f"HTTP {status}" in message
    assert ("lacks write access" if status == 403 else "invalid or expired") in message
    assert TOKEN not in message
    assert hub.committed == {}


def test_cli_push_passes_private_revision_and_message(hub, run_dir, monkeypatch, capsys):
    from vit_transfer.cli import main

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code = main(["push", str(run_dir), "--repo-id", "tester/cli-vit", "--private", "--revision", "v2",
                 "--commit-message", "from the cli", "--what", "model"])
    assert code == 0
    assert create_request(hub.calls("POST", "/api/repos/create")[0])["visibility"] == "private"
    commit = hub.calls("POST", "/api/models/tester/cli-vit/commit/v2")
    assert json.loads(commit[0]["body"].splitlines()[0])["value"]["summary"] == "from the cli"
    out = capsys.readouterr().out
    assert "tester/cli-vit@v2" in out and TOKEN not in out


def test_offline_mode_refuses_with_a_hint(run_dir, monkeypatch):
    from huggingface_hub import constants

    from vit_transfer.hub import HubError

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="--dry-run"):
        push_run(run_dir, "tester/tiny-vit")
