"""A Hugging Face hub on 127.0.0.1, in memory, for tests that must not touch the network.

It answers the requests huggingface_hub makes to download files (`hf_hub_download`: HEAD then GET
`/{repo}/resolve/{revision}/{path}`, with `X-Repo-Commit`, `ETag` and `X-Error-Code` as the hub
sends them) and to publish them (`HfApi.create_repo`, `create_branch`, `create_commit`: the
`/api/...` routes below, every file uploaded inline, as the hub takes small ones). Point
huggingface_hub at it with `HF_ENDPOINT=hub.url`. `requests` records what was asked, in order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> path -> content

    def resolve(self, revision: str) -> str | None:
        return revision if revision in self.commits else self.refs.get(revision)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
               replace: bool = True) -> str:
        """Commit `files` to `branch` (created from main if new; the repo too); returns the commit.
        With `replace` the branch holds exactly `files`, else they are added to what it holds."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.refs.get(branch) or repo.refs.get("main")
            tree = {} if replace or parent is None else dict(repo.commits[parent])
            tree.update(files)
            digest = hashlib.sha1(f"{parent}{len(repo.commits)}".encode())
            for path in sorted(tree):
                digest.update(path.encode() + hashlib.sha256(tree[path]).digest())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def tag(self, repo_id: str, tag: str, commit: str) -> None:
        self.repos[repo_id].refs[tag] = commit

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision) or ""]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:  # quiet: failures show in the test's assertions
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                   content_type: str = "application/json") -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._reply(status, json.dumps(data).encode(), headers)

        def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message,
                                                    **(headers or {})})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _route(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((self.command, unquote(path)))
            if "/resolve/" in path and self.command in ("GET", "HEAD"):
                return self._resolve(path)
            if self.command != "POST" or not path.startswith("/api/"):
                return self._error(404, "NotFound", f"no route {self.command} {path}")
            if path == "/api/validate-yaml":
                self._body()
                return self._json(200, {})
            if path == "/api/repos/create":
                data = json.loads(self._body())
                repo_id = f"{data['organization']}/{data['name']}"
                if repo_id in hub.repos:  # huggingface_hub reads the url from the conflict too
                    return self._json(409, {"error": "You already created this model repo",
                                            "url": f"{hub.url}/{repo_id}"}, {"X-Error-Code": "RepoExists"})
                hub.commit(repo_id, {".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n"})
                # huggingface_hub < 1.0 sends "private": true, later releases "visibility"
                hub.repos[repo_id].private = bool(data.get("private")) or data.get("visibility") == "private"
                return self._json(200, {"url": f"{hub.url}/{repo_id}"})
            parts = [unquote(p) for p in path[len("/api/models/"):].split("/")]
            repo_id, action, revision = "/".join(parts[:2]), parts[2], "/".join(parts[3:])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if action == "branch":
                self._body()
                if revision in repo.refs:
                    return self._error(409, "BranchExists", "Reference already exists")
                repo.refs[revision] = repo.refs["main"]
                return self._json(200, {})
            if repo.resolve(revision) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if action == "preupload":
                files = json.loads(self._body())["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                   "shouldIgnore": False} for f in files]})
            if action == "commit":
                added: dict[str, bytes] = {}
                for line in self._body().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] != "header":
                        return self._error(400, "BadRequest", f"this fake hub takes no {item['key']}")
                sha = hub.commit(repo_id, added, branch=revision, replace=False)
                return self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                                        "pullRequestUrl": None})
            return self._error(404, "NotFound", f"no route {path}")

        def _resolve(self, path: str) -> None:
            repo_part, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            repo_id, revision, filename = unquote(repo_part), unquote(revision), unquote(filename)
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            content = repo.commits[commit].get(filename)
            if content is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}",
                                   {"X-Repo-Commit": commit})
            self._reply(200, content, {"X-Repo-Commit": commit,
                                       "ETag": f'"{hashlib.sha256(content).hexdigest()}"'},
                        content_type="application/octet-stream")

        def do_HEAD(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

    return Handler
